"""`manage.py reap_stuck_runs`: look once for running runs whose worker stopped sending
heartbeats (for ``PONAS_HEARTBEAT_TIMEOUT`` seconds): re-queue them, or mark them failed once
``PONAS_AUTO_RESUMES`` automatic resumes are used up. Workers do this on their own; the
command is for when none is running (e.g. from cron)."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from webapp.runs.watchdog import reap_stuck_runs


def _ids(pks: list[int]) -> str:
    return ", ".join(str(pk) for pk in pks)


class Command(BaseCommand):
    help = (
        "Re-queue running runs without a recent worker heartbeat (or mark them failed once "
        "their automatic resumes are used up)."
    )

    def handle(self, *args, **options) -> None:
        reaped = reap_stuck_runs()
        timeout = settings.PONAS_HEARTBEAT_TIMEOUT
        if reaped.requeued:
            self.stdout.write(
                f"re-queued (no heartbeat for {timeout:g} s): runs {_ids(reaped.requeued)}"
            )
        if reaped.failed:
            self.stdout.write(
                f"marked failed (no heartbeat for {timeout:g} s, no automatic resumes left): "
                f"runs {_ids(reaped.failed)}"
            )
        if not reaped:
            self.stdout.write(f"no stuck runs (heartbeat timeout {timeout:g} s)")
