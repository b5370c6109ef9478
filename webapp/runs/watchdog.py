"""The stuck-run watchdog: a ``running`` run whose worker stopped sending heartbeats for
``PONAS_HEARTBEAT_TIMEOUT`` seconds is marked ``failed`` with a reason; resume continues it
from its last checkpoint. Nothing needs to be scheduled: the API and the pages reap when runs
are listed or opened (one indexed query), and ``manage.py reap_stuck_runs`` does it on demand
(e.g. from cron)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone

from webapp.runs.models import SearchRun, Status

log = logging.getLogger("webapp")


def stuck_message(heartbeat: datetime) -> str:
    when = heartbeat.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return (
        f"the worker stopped sending heartbeats at {when}; "
        "resume to continue from the last checkpoint"
    )


def reap_stuck_runs(now: datetime | None = None) -> list[int]:
    """Mark running runs without a heartbeat for the timeout as failed; their ids."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.PONAS_HEARTBEAT_TIMEOUT)
    last_sign = Coalesce(F("heartbeat"), F("started"), F("created"))
    stuck = (
        SearchRun.objects.filter(status=Status.RUNNING)
        .alias(last_sign=last_sign)
        .filter(last_sign__lt=cutoff)
        .annotate(seen=last_sign)
        .values_list("pk", "attempt", "seen")
    )
    reaped = []
    for pk, attempt, seen in stuck:
        # conditional: a heartbeat that arrives meanwhile (or a resume) wins
        if (
            SearchRun.objects.filter(pk=pk, attempt=attempt, status=Status.RUNNING)
            .alias(last_sign=last_sign)
            .filter(last_sign__lt=cutoff)
            .update(status=Status.FAILED, error=stuck_message(seen), finished=now)
        ):
            log.warning("run %s: no heartbeat since %s; marked failed", pk, seen)
            reaped.append(pk)
    return reaped
