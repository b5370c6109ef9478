"""Leases: which worker process works on a piece of a run, a build or a profile right now.

A task that starts work takes the piece's lease (``"run 5 stage1"``, ``"run 5 layer 2
e3_k3"``, ``"deployment 7"``, ``"profile 3"``) before it touches any file; its heartbeat
renews it while the work makes progress (the task bumps :meth:`Holding.progress` at every
step, batch or evaluation); it releases it when it is done. A lease has expired when it was
not renewed for ``PONAS_HEARTBEAT_TIMEOUT`` seconds (its process died, or its machine
vanished), or when its work made no progress for ``PONAS_PROGRESS_TIMEOUT`` (a hung step: a
deadlocked DDP or data-loader step, which no Celery time limit stops in a solo pool).

A holder is a *process*, named by a random token drawn once per process (:func:`token`,
recorded in the worker registry too), not by host name and pid: containers that share a
host name but not a pid namespace never mistake each other's holders for dead. Where the
holder's pid *can* be checked (the same boot and the same pid namespace, :data:`NAMESPACE`),
a holder whose process is gone is dead at once: the next delivery takes its lease over and
the watchdog re-sends its work without waiting for the expiry, counting the death. After
``PONAS_MAX_DEATHS`` deaths in one attempt the run fails with the reason instead of being
delivered again forever.

A second copy of the task, or a redelivery while the first still works, finds a live lease
and exits. A task of a *newer* attempt of the run (a resume) takes the lease over from a live
holder of an older attempt: that holder's next renewal finds the lease gone and its work
stops, so the newer attempt's work is never dropped.

Taking is a compare-and-swap (a conditional UPDATE on the holder seen), so two workers that
race for a free lease cannot both win, on any database.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import models
from django.utils import timezone

from webapp.runs.models import Lease, Worker

HOST = socket.gethostname()

_token: tuple[int, str] = (0, "")


def token() -> str:
    """This process's random identity (a forked child draws its own)."""
    global _token
    if _token[0] != os.getpid():
        _token = (os.getpid(), secrets.token_hex(16))
    return _token[1]


def _namespace() -> str:
    """Where a pid means this process: the boot of this kernel and its pid namespace (Linux);
    empty where that cannot be told (a pid is then never checked)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot} {os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return ""


NAMESPACE = _namespace()


class CrashLoop(Exception):
    """The processes that held this lease died too often: the work is not tried again."""

    def __init__(self, deaths: int, what: str) -> None:
        times = "once" if deaths == 1 else f"{deaths} times"
        super().__init__(
            f"the worker process died {times} while running {what} (out of memory?); "
            "resume to try again from the last checkpoint"
        )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def died_here(lease: Lease) -> bool:
    """Whether the lease's holder ran where its pid can be checked, and its process is gone."""
    return bool(
        lease.task_id
        and NAMESPACE
        and lease.namespace == NAMESPACE
        and lease.pid
        and not _pid_alive(lease.pid)
    )


def cutoff(now: datetime) -> datetime:
    """Leases renewed before this have expired (workers last seen before it are gone)."""
    return now - timedelta(seconds=settings.PONAS_HEARTBEAT_TIMEOUT)


def progress_cutoff(now: datetime) -> datetime:
    """Leases whose work made no progress since this have stalled."""
    return now - timedelta(seconds=settings.PONAS_PROGRESS_TIMEOUT)


def stalled(lease: Lease, now: datetime) -> bool:
    return lease.progress is not None and lease.progress < progress_cutoff(now)


def holder_alive(lease: Lease, now: datetime) -> bool:
    """Whether the process that holds ``lease`` may still work on it."""
    if not lease.task_id:
        return False  # released
    if died_here(lease):
        return False  # it died where we can see it: no need to wait for the expiry
    if stalled(lease, now):
        return False  # alive perhaps, but its work is hung
    return lease.renewed is not None and lease.renewed >= cutoff(now)


@dataclass
class Holding:
    """A lease this process holds; :meth:`renew` says False once it is no longer its own (it
    expired and another process took it, or a newer attempt did: the work must stop)."""

    key: str
    worker: str
    task_id: str
    token: str
    lost: bool = False  # set by the heartbeat once a renewal finds the lease taken
    progressed: float = field(default_factory=time.time)  # the work's last progress

    def progress(self) -> None:
        """The work moved on (a step, a batch, an evaluation): the lease may be renewed."""
        self.progressed = time.time()

    def stalled(self) -> bool:
        return time.time() - self.progressed > settings.PONAS_PROGRESS_TIMEOUT

    def _mine(self) -> models.QuerySet:
        return Lease.objects.filter(key=self.key, task_id=self.task_id, token=self.token)

    def renew(self) -> bool:
        """Record the last progress, and renew the lease only while there was some recently
        (hung work lets it expire); False when the lease is no longer this holder's."""
        updates = {"progress": datetime.fromtimestamp(self.progressed, UTC)}
        if not self.stalled():
            updates["renewed"] = timezone.now()
        return bool(self._mine().update(**updates))

    def release(self) -> None:
        self._mine().update(task_id="", pid=0, token="")


def take(
    key: str,
    worker: str,
    task_id: str,
    what: str,
    *,
    attempt: int = 0,
    run=None,
    deployment=None,
    audit=None,
    profile=None,
) -> Holding | None:
    """The lease ``key`` for this process and task, or None when a live holder of this or a
    newer attempt has it. Raises :class:`CrashLoop` when, in this attempt,
    ``PONAS_MAX_DEATHS`` processes died holding it (``what`` names the work there)."""
    Lease.objects.get_or_create(
        key=key,
        defaults={"run": run, "deployment": deployment, "audit": audit, "profile": profile},
    )
    lease = Lease.objects.get(key=key)
    now = timezone.now()
    older = lease.held and lease.attempt < attempt  # a resume's work takes over
    if holder_alive(lease, now) and not older:
        return None
    same_attempt = lease.attempt == attempt
    died = lease.held and same_attempt  # held, not released, not alive: its process died
    deaths = (lease.deaths if same_attempt else 0) + died
    if deaths >= settings.PONAS_MAX_DEATHS:
        raise CrashLoop(deaths, what)
    holding = Holding(key, worker, task_id or f"pid-{os.getpid()}", token())
    taken = Lease.objects.filter(
        pk=lease.pk, task_id=lease.task_id, token=lease.token, renewed=lease.renewed
    ).update(
        worker=worker,
        host=HOST,
        pid=os.getpid(),
        token=holding.token,
        namespace=NAMESPACE,
        task_id=holding.task_id,
        attempt=attempt,
        taken=now,
        renewed=now,
        progress=now,
        deaths=deaths,
    )
    return holding if taken else None


def worker_on_it(lease: Lease, now: datetime) -> bool:
    """Whether the worker registry says the lease's process is alive, started before it took
    the lease, and still runs that task (so an expired lease is only a late heartbeat)."""
    workers = Worker.objects.filter(
        last_seen__gte=cutoff(now),
        started__lte=lease.taken or now,
        current_task__contains=lease.task_id,
    )
    if lease.token:
        workers = workers.filter(token=lease.token)
    else:  # a lease taken before tokens
        workers = workers.filter(name=lease.worker)
    return workers.exists()


def lost(now: datetime, leases: models.QuerySet) -> dict[int, tuple[str, datetime | None]]:
    """Of ``leases`` (e.g. those of runs, matched to their current attempt), those whose work
    nobody does any more: expired while their worker is gone, stalled (no progress for
    ``PONAS_PROGRESS_TIMEOUT``), or held by a process seen dead here. Work that waits in a
    queue holds no lease, so it is never lost for waiting. Each as ``pk: (token, renewed)``,
    what :func:`still_lost` checks again."""
    held = leases.filter(task_id__gt="")
    expired = models.Q(renewed__lt=cutoff(now)) | models.Q(progress__lt=progress_cutoff(now))
    if NAMESPACE:
        expired |= models.Q(namespace=NAMESPACE)  # the pid is checked below
    found = {}
    for lease in held.filter(expired):
        if (died_here(lease) and not _parent_alive(lease)) or stalled(lease, now):
            found[lease.pk] = (lease.token, lease.renewed)
        elif lease.renewed is not None and lease.renewed < cutoff(now):
            if not worker_on_it(lease, now):
                found[lease.pk] = (lease.token, lease.renewed)
    return found


def _parent_alive(lease: Lease) -> bool:
    """Whether the dead holder was a pool's child whose worker still lives here (a prefork
    worker): that worker hands the task out again itself, and the next delivery counts the
    death; the watchdog leaves it to it."""
    pids = Worker.objects.filter(name=lease.worker).values_list("pid", flat=True)
    return any(pid and pid != lease.pid and _pid_alive(pid) for pid in pids)


def still_lost(seen: dict[int, tuple[str, datetime | None]]) -> models.Exists:
    """For a conditional UPDATE: one of these leases is still held by the holder seen, not
    renewed since (a renewal or a takeover that arrives meanwhile wins)."""
    same = models.Q(pk__in=[])
    for pk, (holder, renewed) in seen.items():
        same |= models.Q(pk=pk, token=holder, renewed=renewed)
    return models.Exists(Lease.objects.filter(same, task_id__gt=""))
