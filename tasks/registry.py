"""The worker registry: every worker records itself (name, queues, device, torch version,
the task it runs, when it was last seen) when it is ready and then with its watchdog's
heartbeat (``tasks.watchdog``), and removes itself when it shuts down. The workers page, the
API's ``workers/``, the run page's "no live worker" notice and the watchdog (is the worker of
an expired lease gone?) read it."""

from __future__ import annotations

import os
from typing import Any

import torch
from celery.signals import task_postrun, task_prerun, worker_ready, worker_shutdown
from django.utils import timezone

from webapp.runs.leases import token
from webapp.runs.models import Worker

# What this process is, once it is ready as a worker (a test or a shell records nothing).
_me: dict[str, Any] = {}
# The task this process runs now: "name[id] args" (a solo-pool worker runs one at a time).
_current = ""


def device() -> str:
    """CPU, or the GPU model and its memory (the first one this process sees)."""
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        count = torch.cuda.device_count()
        many = f" (x{count})" if count > 1 else ""
        return f"{props.name}, {props.total_memory / 2**30:.0f} GiB{many}"
    return f"CPU ({os.cpu_count()} cores)"


@task_prerun.connect
def _task_started(task_id: str = "", task=None, args=(), **_: Any) -> None:
    global _current
    _current = f"{getattr(task, 'name', '?')}[{task_id}] {tuple(args)!r:.100}"


@task_postrun.connect
def _task_ended(**_: Any) -> None:
    global _current
    _current = ""


def record() -> None:
    """Write this worker's row (started, queues, device ...; last seen now)."""
    if not _me:
        return
    Worker.objects.update_or_create(
        name=_me["name"],
        defaults={**_me, "current_task": _current, "last_seen": timezone.now()},
    )


@worker_ready.connect
def _ready(sender=None, **_: Any) -> None:
    queues = sender.app.amqp.queues if sender is not None else {}
    queues = sorted(queues.consume_from or queues)
    _me.update(
        name=getattr(sender, "hostname", "") or "",
        queues=queues,
        device=device(),
        torch_version=torch.__version__,
        pid=os.getpid(),
        token=token(),  # what its leases name (a pid may repeat in another container)
        started=timezone.now(),
    )
    record()


@worker_shutdown.connect
def _gone(**_: Any) -> None:
    if _me:
        Worker.objects.filter(name=_me["name"], token=_me["token"]).delete()
