"""The lost-work watchdog. Work that waits in a queue is *waiting*: no task of it runs, it
holds no lease, and it is never reaped, however long other users' work keeps it waiting. Work
is *lost* when a task's lease (:mod:`webapp.runs.leases`) is no longer live: not renewed for
``PONAS_HEARTBEAT_TIMEOUT`` seconds while the worker registry does not show its worker alive
and on that task (the worker was killed, its machine vanished); held by a process seen dead
on this machine (at once); or stalled, its work making no progress for
``PONAS_PROGRESS_TIMEOUT`` (a hung step). A ``running`` run is lost too when no task of its
attempt holds a lease, nothing of it was heard for the heartbeat timeout, and its queue is
empty (its next task was dropped or vanished with a broker's unacknowledged message: nothing
would ever continue it).

A lost run is put back in the queue at once (its ``run_search`` re-sent as a new attempt,
not waiting for the broker to redeliver the dead worker's message: on Redis that is the
visibility timeout, 12 h) and any worker continues it from its last checkpoint, up to
``PONAS_AUTO_RESUMES`` times (counted since the run was created or last resumed by hand);
after that it is marked ``failed`` with the reason, and a manual resume continues it. It is
never left ``running``. A deployment build or a device profile whose worker vanished is
re-queued the same way (it starts over: both are short); after that it is marked failed. A
late copy of the lost task finds a newer attempt or a live lease and does nothing.

Who looks: every worker, when it starts and then every ``PONAS_WATCHDOG_SECONDS``
(``tasks.watchdog``); the periodic task ``tasks.watchdog.reap_stuck_work`` that Celery beat
sends as often; and ``manage.py reap_stuck_runs`` (e.g. from cron). Never a request: reads
change nothing. Any number of them may look at once: each change is a conditional UPDATE that
only one wins, and a heartbeat that arrives meanwhile wins over all.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import models, transaction
from django.db.models import F
from django.utils import timezone

from webapp.runs.leases import cutoff, lost, still_lost
from webapp.runs.models import (
    LAST_SIGN,
    Audit,
    Deployment,
    DeviceProfile,
    Lease,
    Lifecycle,
    SearchRun,
    Status,
)
from webapp.runs.services import send_audit, send_build, send_profile, send_search
from webapp.runs.workers import queue_length

log = logging.getLogger("webapp")

RESUME_HINT = "resume to continue from the last checkpoint"


@dataclass
class Reaped:
    """What one look did: ids put back in the queue, ids marked failed."""

    requeued: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.requeued or self.failed)


def stuck_message(
    heartbeat: datetime,
    auto_resumes: int = 0,
    next_step: str = RESUME_HINT,
) -> str:
    when = heartbeat.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    again = ""
    if auto_resumes:
        times = "once" if auto_resumes == 1 else f"{auto_resumes} times"
        again = f" (it had been re-queued automatically {times} before)"
    return f"the worker stopped sending heartbeats at {when}{again}; {next_step}"


@dataclass(frozen=True)
class _Kind:
    """How one kind of running work is reaped; the functions take the item's row (a dict of
    ``pk``, ``auto_resumes``, ``seen`` and ``columns``)."""

    model: type[Lifecycle]
    send: Callable[[dict], Any]  # sends its task again once the re-queue commits (services)
    next_step: str  # what the user can do once it is failed
    fields: tuple[str, ...] = ("queue",)  # what ``send`` reads besides pk
    # A re-queue is a new attempt: the lost attempt's leases (still held) no longer count, and
    # a late task of it does nothing.
    attempts: bool = False
    reset: dict[str, Any] = field(default_factory=dict)  # also set when re-queued

    @property
    def what(self) -> str:
        """Its name, as the Lease's field that names an item of it ("run", "profile" ...)."""
        return self.model._meta.get_field("leases").field.name

    @property
    def columns(self) -> tuple[str, ...]:
        """What the functions below read of an item besides pk."""
        return (*self.fields, "attempt") if self.attempts else self.fields

    def leases(self) -> models.QuerySet:
        """The leases of its running items (of their current attempt)."""
        leases = Lease.objects.filter(**{f"{self.what}__status": Status.RUNNING})
        return leases.filter(attempt=F(f"{self.what}__attempt")) if self.attempts else leases

    def current(self, row: dict) -> dict[str, Any]:
        """Filters for just this item (its attempt)."""
        return {"attempt": row["attempt"]} if self.attempts else {}

    def requeue(self, row: dict) -> dict[str, Any]:
        """The fields set besides the status when it is re-queued."""
        return {**self.reset, "attempt": row["attempt"] + 1} if self.attempts else self.reset


def _restarted(model: type[Lifecycle], send: Callable[[int, str], Any], next_step: str) -> _Kind:
    """A kind whose re-queued item starts over (a build, a profile: both are short), its task
    sent again to its queue."""
    return _Kind(model, lambda row: send(row["pk"], row["queue"]), next_step)


RUNS = _Kind(
    SearchRun,
    lambda row: send_search(row["pk"], row["attempt"] + 1, row["queue"]),
    RESUME_HINT,
    attempts=True,
)
DEPLOYMENTS = _restarted(Deployment, send_build, "deploy again to build it")
PROFILES = _restarted(DeviceProfile, send_profile, "profile the device again")
AUDITS = _Kind(
    Audit,
    # its trainings not done yet (or its finishing task); those done are kept
    lambda row: send_audit(row["pk"], row["run__queue"]),
    "audit again (the networks trained so far are not reused)",
    fields=("run__queue",),
    attempts=True,
    reset={"finishing": False},
)


def _reap(kind: _Kind, now: datetime | None) -> Reaped:
    now = now or timezone.now()
    objects = kind.model.objects
    leases: dict[int, dict] = {}  # item -> its lost leases, as lost() saw them
    seen = lost(now, kind.leases())
    for pk, item in kind.leases().filter(pk__in=seen).values_list("pk", f"{kind.what}_id"):
        leases.setdefault(item, {})[pk] = seen[pk]
    found = objects.filter(pk__in=leases, status=Status.RUNNING).annotate(seen=LAST_SIGN)
    reaped = Reaped()
    for row in found.values("pk", "auto_resumes", "seen", *kind.columns):
        # just this item while its work is still lost: a renewal that arrives meanwhile (or
        # another watchdog) wins
        current = objects.filter(
            still_lost(leases[row["pk"]]),
            pk=row["pk"],
            status=Status.RUNNING,
            **kind.current(row),
        )
        _requeue_or_fail(kind, row, current, now, reaped)
    return reaped


def _requeue_or_fail(kind: _Kind, row: dict, current, now: datetime, reaped: Reaped) -> None:
    """Re-queue the item (its task sent again at once) while it has automatic resumes left,
    else mark it failed; ``current`` is the item while it is still lost (one UPDATE wins)."""
    pk, auto_resumes, seen = row["pk"], row["auto_resumes"], row["seen"]
    if auto_resumes < settings.PONAS_AUTO_RESUMES:
        with transaction.atomic():
            if current.requeue(auto_resumes=auto_resumes + 1, **kind.requeue(row)):
                kind.send(row)
                log.warning(
                    "%s %s: no heartbeat since %s; re-queued (automatic resume %s of %s)",
                    kind.what,
                    pk,
                    seen,
                    auto_resumes + 1,
                    settings.PONAS_AUTO_RESUMES,
                )
                reaped.requeued.append(pk)
    elif current.fail(stuck_message(seen, auto_resumes, kind.next_step), now=now):
        log.warning("%s %s: no heartbeat since %s; marked failed", kind.what, pk, seen)
        reaped.failed.append(pk)


def _reap_idle_runs(now: datetime, reaped: Reaped) -> None:
    """Running runs that no task of their attempt works on (no held lease), silent for the
    heartbeat timeout, whose queue holds nothing (so nothing is waiting to continue them):
    re-queued (or failed) like lost ones."""
    held = Lease.objects.filter(run=models.OuterRef("pk"), attempt=models.OuterRef("attempt"))
    idle = (
        SearchRun.objects.filter(status=Status.RUNNING)
        .annotate(seen=LAST_SIGN)
        .filter(seen__lt=cutoff(now))
        .exclude(models.Exists(held.filter(task_id__gt="")))
    )
    empty: dict[str, bool] = {}
    for row in idle.values("pk", "auto_resumes", "seen", *RUNS.columns):
        # its heavy tasks go to its queue, closing a layer to `default`
        for queue in {row["queue"], "default"} - empty.keys():
            empty[queue] = queue_length(queue) == 0  # None (the broker cannot say): wait
        if not (empty[row["queue"]] and empty["default"]):
            continue
        current = idle.filter(pk=row["pk"], attempt=row["attempt"])
        _requeue_or_fail(RUNS, row, current, now, reaped)


def reap_stuck_runs(now: datetime | None = None) -> Reaped:
    """Re-queue (or, with no automatic resumes left, fail) every run whose work is lost. A
    re-queued run is a new attempt: tasks of the lost attempt do nothing, and its
    ``run_search`` continues from the last checkpoint."""
    now = now or timezone.now()
    reaped = _reap(RUNS, now)
    _reap_idle_runs(now, reaped)
    return reaped


def reap_stuck_deployments(now: datetime | None = None) -> Reaped:
    """The same for deployment builds: a re-queued build starts over."""
    return _reap(DEPLOYMENTS, now)


def reap_stuck_audits(now: datetime | None = None) -> Reaped:
    """The same for table audits: a re-queued audit keeps its trained networks and sends the
    trainings still to do (each starts over)."""
    return _reap(AUDITS, now)


def reap_stuck_profiles(now: datetime | None = None) -> Reaped:
    """The same for device profiles: a re-queued profile times the blocks again."""
    return _reap(PROFILES, now)


def reap_all(now: datetime | None = None) -> dict[str, Reaped]:
    """One look at runs, deployment builds, device profiles and table audits, by name."""
    now = now or timezone.now()
    return {
        "runs": reap_stuck_runs(now),
        "deployments": reap_stuck_deployments(now),
        "profiles": reap_stuck_profiles(now),
        "audits": reap_stuck_audits(now),
    }
