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
from django.db.models.functions import Coalesce
from django.utils import timezone

from webapp.runs.leases import cutoff, lost, still_lost
from webapp.runs.models import Audit, Deployment, DeviceProfile, Lease, SearchRun, Status
from webapp.runs.services import send_audit, send_build, send_profile, send_search
from webapp.runs.workers import queue_length

log = logging.getLogger("webapp")

RESUME_HINT = "resume to continue from the last checkpoint"

# The last sign of life of running work: its heartbeat, else its start.
LAST_SIGN = Coalesce(F("heartbeat"), F("started"), F("created"))


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
    """How one kind of running work is reaped; each function takes the item's row (a dict of
    ``pk``, ``auto_resumes``, ``seen`` and ``fields``)."""

    what: str
    model: type[models.Model]
    leases: Callable[[], models.QuerySet]  # the leases of its running items (current attempt)
    owner: str  # the lease's field that names the item
    fields: tuple[str, ...]  # what the functions below read besides pk
    current: Callable[[dict], dict[str, Any]]  # filters for just this item (e.g. its attempt)
    requeue: Callable[[dict], dict[str, Any]]  # fields set besides the status when re-queued
    send: Callable[[dict], Any]  # sends its task again once the re-queue commits (services)
    next_step: str  # what the user can do once it is failed


RUNS = _Kind(
    "run",
    SearchRun,
    lambda: Lease.objects.filter(run__status=Status.RUNNING, attempt=F("run__attempt")),
    "run_id",
    ("attempt", "queue"),
    current=lambda row: {"attempt": row["attempt"]},
    requeue=lambda row: {"attempt": row["attempt"] + 1},
    send=lambda row: send_search(row["pk"], row["attempt"] + 1, row["queue"]),
    next_step=RESUME_HINT,
)
DEPLOYMENTS = _Kind(
    "deployment",
    Deployment,
    lambda: Lease.objects.filter(deployment__status=Status.RUNNING),
    "deployment_id",
    ("queue",),
    current=lambda row: {},
    requeue=lambda row: {},
    send=lambda row: send_build(row["pk"], row["queue"]),
    next_step="deploy again to build it",
)
PROFILES = _Kind(
    "profile",
    DeviceProfile,
    lambda: Lease.objects.filter(profile__status=Status.RUNNING),
    "profile_id",
    ("queue",),
    current=lambda row: {},
    requeue=lambda row: {},
    send=lambda row: send_profile(row["pk"], row["queue"]),
    next_step="profile the device again",
)

AUDITS = _Kind(
    "audit",
    Audit,
    lambda: Lease.objects.filter(audit__status=Status.RUNNING, attempt=F("audit__attempt")),
    "audit_id",
    ("run__queue", "attempt"),
    current=lambda row: {"attempt": row["attempt"]},
    # a new attempt: the lost trainings' leases (still held) no longer count against it
    requeue=lambda row: {"finishing": False, "attempt": row["attempt"] + 1},
    # its trainings not done yet (or its finishing task); those done are kept
    send=lambda row: send_audit(row["pk"], row["run__queue"]),
    next_step="audit again (the networks trained so far are not reused)",
)


def _reap(kind: _Kind, now: datetime | None) -> Reaped:
    now = now or timezone.now()
    objects = kind.model.objects
    leases: dict[int, dict] = {}  # item -> its lost leases, as lost() saw them
    seen = lost(now, kind.leases())
    for pk, item in kind.leases().filter(pk__in=seen).values_list("pk", kind.owner):
        leases.setdefault(item, {})[pk] = seen[pk]
    found = objects.filter(pk__in=leases, status=Status.RUNNING).annotate(seen=LAST_SIGN)
    reaped = Reaped()
    for row in found.values("pk", "auto_resumes", "seen", *kind.fields):
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
            if current.update(
                status=Status.QUEUED,
                auto_resumes=auto_resumes + 1,
                worker="",
                **kind.requeue(row),
            ):
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
    elif current.update(
        status=Status.FAILED,
        error=stuck_message(seen, auto_resumes, kind.next_step),
        finished=now,
    ):
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
    for row in idle.values("pk", "auto_resumes", "seen", *RUNS.fields):
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
