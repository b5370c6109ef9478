"""The stuck-run watchdog: a ``running`` run whose worker stopped sending heartbeats for
``PONAS_HEARTBEAT_TIMEOUT`` seconds (the worker was killed, its machine vanished) is put back
in the queue and any worker continues it from its last checkpoint, up to
``PONAS_AUTO_RESUMES`` times (counted since the run was created or last resumed by hand);
after that it is marked ``failed`` with the reason, and a manual resume continues it. It is
never left ``running``. A deployment build whose worker vanished is re-queued the same way
(it starts over: builds are short); after that it is marked failed.

Who looks: every worker, when it starts and then every ``PONAS_WATCHDOG_SECONDS``
(``tasks.watchdog``); the periodic task ``tasks.watchdog.reap_stuck_work`` that Celery beat
sends as often; and ``manage.py reap_stuck_runs`` (e.g. from cron). Never a request: reads
change nothing. Any number of them may look at once: each change is a conditional UPDATE that
only one wins, and a heartbeat that arrives meanwhile wins over all.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import models, transaction
from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone

from webapp.runs.models import Deployment, SearchRun, Status
from webapp.runs.services import send_build, send_search

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


def _stuck(queryset: models.QuerySet, cutoff: datetime) -> models.QuerySet:
    return (
        queryset.filter(status=Status.RUNNING)
        .alias(last_sign=LAST_SIGN)
        .filter(last_sign__lt=cutoff)
    )


def _cutoff(now: datetime) -> datetime:
    return now - timedelta(seconds=settings.PONAS_HEARTBEAT_TIMEOUT)


@dataclass
class _Lost:
    """Running work whose worker vanished, as the shared reaping loop needs it."""

    pk: int
    auto_resumes: int
    seen: datetime  # its last sign of life
    current: models.QuerySet  # just this item while it is still stuck: updates go through it
    requeue: dict[str, Any]  # fields set besides the status when it is re-queued
    send: Callable[[], Any]  # sends its task again once the re-queue commits (services)


def _reap(what: str, lost: Iterable[_Lost], next_step: str, now: datetime) -> Reaped:
    reaped = Reaped()
    for item in lost:
        # conditional: a heartbeat that arrives meanwhile (or another watchdog) wins
        if item.auto_resumes < settings.PONAS_AUTO_RESUMES:
            with transaction.atomic():
                if item.current.update(
                    status=Status.QUEUED,
                    auto_resumes=item.auto_resumes + 1,
                    worker="",
                    **item.requeue,
                ):
                    item.send()
                    log.warning(
                        "%s %s: no heartbeat since %s; re-queued (automatic resume %s of %s)",
                        what,
                        item.pk,
                        item.seen,
                        item.auto_resumes + 1,
                        settings.PONAS_AUTO_RESUMES,
                    )
                    reaped.requeued.append(item.pk)
        elif item.current.update(
            status=Status.FAILED,
            error=stuck_message(item.seen, item.auto_resumes, next_step),
            finished=now,
        ):
            log.warning("%s %s: no heartbeat since %s; marked failed", what, item.pk, item.seen)
            reaped.failed.append(item.pk)
    return reaped


def reap_stuck_runs(now: datetime | None = None) -> Reaped:
    """Re-queue (or, with no automatic resumes left, fail) every run without a heartbeat for
    the timeout. A re-queued run is a new attempt: tasks of the lost attempt do nothing, and
    its ``run_search`` continues from the last checkpoint."""
    now = now or timezone.now()
    cutoff = _cutoff(now)
    found = _stuck(SearchRun.objects, cutoff).annotate(seen=LAST_SIGN)
    lost = (
        _Lost(
            pk,
            auto_resumes,
            seen,
            current=_stuck(SearchRun.objects.filter(pk=pk, attempt=attempt), cutoff),
            requeue={"attempt": attempt + 1},
            send=partial(send_search, pk, attempt + 1, queue),
        )
        for pk, attempt, auto_resumes, queue, seen in found.values_list(
            "pk", "attempt", "auto_resumes", "queue", "seen"
        )
    )
    return _reap("run", lost, RESUME_HINT, now)


def reap_stuck_deployments(now: datetime | None = None) -> Reaped:
    """The same for deployment builds: a re-queued build starts over."""
    now = now or timezone.now()
    cutoff = _cutoff(now)
    found = _stuck(Deployment.objects, cutoff).annotate(seen=LAST_SIGN)
    lost = (
        _Lost(
            pk,
            auto_resumes,
            seen,
            current=_stuck(Deployment.objects.filter(pk=pk), cutoff),
            requeue={},
            send=partial(send_build, pk, queue),
        )
        for pk, auto_resumes, queue, seen in found.values_list(
            "pk", "auto_resumes", "run__queue", "seen"
        )
    )
    return _reap("deployment", lost, "deploy again to build it", now)


def reap_all(now: datetime | None = None) -> tuple[Reaped, Reaped]:
    """One look at both: ``(runs, deployments)``."""
    now = now or timezone.now()
    return reap_stuck_runs(now), reap_stuck_deployments(now)
