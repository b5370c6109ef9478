"""Leases: which worker process works on a piece of a run or a build right now.

A task that starts work takes the piece's lease (``"run 5 stage1"``, ``"run 5 layer 2
e3_k3"``, ``"deployment 7"``) before it touches any file; its heartbeat renews it (one
not renewed for ``PONAS_HEARTBEAT_TIMEOUT`` seconds has expired); it releases it when it is done. A second copy of the
task, a redelivery while the first still works, or a task of a stale attempt finds a live
lease and exits. A lease is live while its holder renews it and, on the same machine, while
its process exists: a process that died (killed, out of memory) leaves a lease that the
next delivery takes over at once, counting the death. After ``PONAS_MAX_DEATHS`` deaths in
one attempt the run fails with the reason instead of being delivered again forever.

Taking is a compare-and-swap (a conditional UPDATE on the holder seen), so two workers that
race for a free lease cannot both win, on any database.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

from webapp.runs.models import Lease, Worker

HOST = socket.gethostname()


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


def holder_alive(lease: Lease, now: datetime) -> bool:
    """Whether the process that holds ``lease`` may still work on it."""
    if not lease.task_id:
        return False  # released
    if lease.host == HOST and lease.pid and not _pid_alive(lease.pid):
        return False  # it died on this machine: no need to wait for the expiry
    return lease.renewed is not None and lease.renewed >= cutoff(now)


def cutoff(now: datetime) -> datetime:
    """Leases renewed before this have expired (workers last seen before it are gone)."""
    return now - timedelta(seconds=settings.PONAS_HEARTBEAT_TIMEOUT)


@dataclass
class Holding:
    """A lease this process holds; :meth:`renew` says False once it is no longer its own (it
    expired and another process took it: the work must stop)."""

    key: str
    worker: str
    task_id: str
    pid: int
    lost: bool = False  # set by the heartbeat once a renewal finds the lease taken

    def _mine(self) -> models.QuerySet:
        return Lease.objects.filter(key=self.key, task_id=self.task_id, pid=self.pid, host=HOST)

    def renew(self) -> bool:
        return bool(self._mine().update(renewed=timezone.now()))

    def release(self) -> None:
        self._mine().update(task_id="", pid=0)


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
) -> Holding | None:
    """The lease ``key`` for this process and task, or None when a live holder has it.
    Raises :class:`CrashLoop` when, in this attempt, ``PONAS_MAX_DEATHS`` processes died
    holding it (``what`` names the work in that message)."""
    Lease.objects.get_or_create(
        key=key, defaults={"run": run, "deployment": deployment, "audit": audit}
    )
    lease = Lease.objects.get(key=key)
    now = timezone.now()
    if holder_alive(lease, now):
        return None
    same_attempt = lease.attempt == attempt
    died = lease.held and same_attempt  # held, not released, not alive: its process died
    deaths = (lease.deaths if same_attempt else 0) + died
    if deaths >= settings.PONAS_MAX_DEATHS:
        raise CrashLoop(deaths, what)
    holding = Holding(key, worker, task_id or f"pid-{os.getpid()}", os.getpid())
    taken = Lease.objects.filter(pk=lease.pk, task_id=lease.task_id, renewed=lease.renewed).update(
        worker=worker,
        host=HOST,
        pid=holding.pid,
        task_id=holding.task_id,
        attempt=attempt,
        taken=now,
        renewed=now,
        deaths=deaths,
    )
    return holding if taken else None


def worker_on_it(lease: Lease, now: datetime) -> bool:
    """Whether the worker registry says the lease's worker is alive, started before it took
    the lease, and still runs that task (so an expired lease is only a late heartbeat)."""
    return Worker.objects.filter(
        name=lease.worker,
        last_seen__gte=cutoff(now),
        started__lte=lease.taken or now,
        current_task__contains=lease.task_id,
    ).exists()


def lost(now: datetime, leases: models.QuerySet) -> set[int]:
    """Of ``leases`` (e.g. those of runs, matched to their current attempt), the pks of those
    that expired while their worker is gone: work nobody does any more. Work that waits in a
    queue holds no lease, so it is never lost for waiting."""
    expired = leases.filter(task_id__gt="", renewed__lt=cutoff(now))
    return {lease.pk for lease in expired if not worker_on_it(lease, now)}


def still_expired(pks: set[int], now: datetime) -> models.Exists:
    """For a conditional UPDATE: one of these leases is still held and expired (a renewal
    that arrives meanwhile wins)."""
    return models.Exists(Lease.objects.filter(pk__in=pks, task_id__gt="", renewed__lt=cutoff(now)))
