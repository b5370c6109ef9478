"""The stuck-run watchdog: a ``running`` run whose worker stopped sending heartbeats for
``PONAS_HEARTBEAT_TIMEOUT`` seconds (the worker was killed, its machine vanished) is put back
in the queue and any worker continues it from its last checkpoint, up to
``PONAS_AUTO_RESUMES`` times (counted since the run was created or last resumed by hand);
after that it is marked ``failed`` with the reason, and a manual resume continues it. It is
never left ``running``.

Who looks: every worker, when it starts and then every ``PONAS_WATCHDOG_SECONDS``
(``tasks.watchdog``); the API and the pages, when runs are listed or opened (one indexed
query); and ``manage.py reap_stuck_runs``. Any number of them may look at once: each change is
a conditional UPDATE that only one wins, and a heartbeat that arrives meanwhile wins over all.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone

from webapp.runs.models import SearchRun, Status

log = logging.getLogger("webapp")


@dataclass
class Reaped:
    """What one look did: runs put back in the queue, runs marked failed (ids)."""

    requeued: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.requeued or self.failed)


def stuck_message(heartbeat: datetime, auto_resumes: int = 0) -> str:
    when = heartbeat.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    again = ""
    if auto_resumes:
        times = "once" if auto_resumes == 1 else f"{auto_resumes} times"
        again = f" (it had been re-queued automatically {times} before)"
    return (
        f"the worker stopped sending heartbeats at {when}{again}; "
        "resume to continue from the last checkpoint"
    )


def reap_stuck_runs(now: datetime | None = None) -> Reaped:
    """Re-queue (or, with no automatic resumes left, fail) every run without a heartbeat for
    the timeout. A re-queued run's ``run_search`` is sent once the transaction commits."""
    from tasks.search import run_search  # tasks import this module's models; import late

    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.PONAS_HEARTBEAT_TIMEOUT)
    last_sign = Coalesce(F("heartbeat"), F("started"), F("created"))
    stuck = (
        SearchRun.objects.filter(status=Status.RUNNING)
        .alias(last_sign=last_sign)
        .filter(last_sign__lt=cutoff)
        .annotate(seen=last_sign)
        .values_list("pk", "attempt", "auto_resumes", "queue", "seen")
    )
    reaped = Reaped()
    for pk, attempt, auto_resumes, queue, seen in stuck:
        # conditional: a heartbeat that arrives meanwhile (or another watchdog) wins
        still_stuck = (
            SearchRun.objects.filter(pk=pk, attempt=attempt, status=Status.RUNNING)
            .alias(last_sign=last_sign)
            .filter(last_sign__lt=cutoff)
        )
        if auto_resumes < settings.PONAS_AUTO_RESUMES:
            with transaction.atomic():
                if still_stuck.update(
                    status=Status.QUEUED,
                    attempt=attempt + 1,  # tasks of the lost attempt do nothing
                    auto_resumes=auto_resumes + 1,
                    worker="",
                ):
                    transaction.on_commit(
                        partial(run_search.apply_async, (pk, attempt + 1), queue=queue)
                    )
                    log.warning(
                        "run %s: no heartbeat since %s; re-queued (automatic resume %s of %s)",
                        pk,
                        seen,
                        auto_resumes + 1,
                        settings.PONAS_AUTO_RESUMES,
                    )
                    reaped.requeued.append(pk)
        elif still_stuck.update(
            status=Status.FAILED, error=stuck_message(seen, auto_resumes), finished=now
        ):
            log.warning("run %s: no heartbeat since %s; marked failed", pk, seen)
            reaped.failed.append(pk)
    return reaped
