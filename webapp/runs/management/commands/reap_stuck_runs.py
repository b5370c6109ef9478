"""`manage.py reap_stuck_runs`: mark running runs whose worker stopped sending heartbeats
(for ``PONAS_HEARTBEAT_TIMEOUT`` seconds) as failed; they can be resumed."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from webapp.runs.watchdog import reap_stuck_runs


class Command(BaseCommand):
    help = "Mark running runs without a recent worker heartbeat as failed (resumable)."

    def handle(self, *args, **options) -> None:
        reaped = reap_stuck_runs()
        timeout = settings.PONAS_HEARTBEAT_TIMEOUT
        if reaped:
            ids = ", ".join(str(pk) for pk in reaped)
            self.stdout.write(f"marked failed (no heartbeat for {timeout:g} s): runs {ids}")
        else:
            self.stdout.write(f"no stuck runs (heartbeat timeout {timeout:g} s)")
