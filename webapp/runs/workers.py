"""What the web app knows of the workers: the live ones (from the worker registry that
``tasks.registry`` writes), which queues they consume, how many tasks wait in a queue (asked
of the broker), and so where a run's work waits. Reads only."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.models import QuerySet
from django.utils import timezone

from webapp.celery import app
from webapp.runs.models import SearchRun, Status, Worker


def live_workers() -> QuerySet:
    """Workers seen within ``PONAS_HEARTBEAT_TIMEOUT`` (a stopped worker removes itself)."""
    since = timezone.now() - timedelta(seconds=settings.PONAS_HEARTBEAT_TIMEOUT)
    return Worker.objects.filter(last_seen__gte=since)


def consumers(queue: str) -> list[Worker]:
    """The live workers that consume ``queue``."""
    return [w for w in live_workers() if queue in (w.queues or [])]


def start_command(queue: str) -> str:
    """The command that starts a worker on ``queue`` (one machine: both queues)."""
    return f"celery -A webapp worker -Q {queue} -P solo"


def queue_length(queue: str) -> int | None:
    """Tasks waiting in ``queue``, as the broker counts them (Redis: the list's length; the
    filesystem broker: its message files); None when the broker cannot say. Kept for two
    seconds: every open run page asks."""
    key = f"ponas-queue-length:{queue}"
    found = cache.get(key)
    if found is not None:
        return found
    try:
        with app.connection_for_read() as conn:
            _, count, _ = conn.default_channel.queue_declare(queue=queue)
    except Exception:  # no such queue yet, the broker away: do not guess
        return None
    cache.set(key, count, 2)
    return count


def waiting(run: SearchRun) -> dict[str, Any] | None:
    """Where a run waits when none of its tasks runs now (queued, or running between tasks:
    the next stage-1 chunk, a layer's candidates): its queue, the tasks ahead, the live
    workers on it, and a message a user reads. None while a task of it holds a lease."""
    if run.status not in (Status.QUEUED, Status.RUNNING):
        return None
    if (
        run.status == Status.RUNNING
        and run.leases.filter(task_id__gt="", attempt=run.attempt).exists()
    ):
        return None
    queue, workers = run.queue, consumers(run.queue)
    length = queue_length(queue)
    ahead = None if length is None else max(length - 1, 0)
    if not workers:
        message = f"no live worker consumes queue {queue}: start one with `{start_command(queue)}`"
    elif ahead is None:
        message = f"waiting in queue {queue}"
    else:
        message = f"waiting in queue {queue} behind {ahead} task{'s' * (ahead != 1)}"
    return {
        "queue": queue,
        "ahead": ahead,
        "workers": len(workers),
        "start_command": None if workers else start_command(queue),
        "message": message,
    }
