"""`manage.py reap_stuck_runs`: look once for running runs, deployment builds, device profiles
and table audits whose worker stopped sending heartbeats (for ``PONAS_HEARTBEAT_TIMEOUT`` seconds): re-queue them, or mark
them failed once ``PONAS_AUTO_RESUMES`` automatic resumes are used up. Workers and Celery
beat's periodic task do this on their own; the command is for cron, where beat does not run."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from webapp.runs.watchdog import reap_all


def _ids(pks: list[int]) -> str:
    return ", ".join(str(pk) for pk in pks)


class Command(BaseCommand):
    help = (
        "Re-queue running runs and deployment builds without a recent worker heartbeat (or "
        "mark them failed once their automatic resumes are used up)."
    )

    def handle(self, *args, **options) -> None:
        timeout = settings.PONAS_HEARTBEAT_TIMEOUT
        found = False
        for what, reaped in reap_all().items():
            found = found or bool(reaped)
            if reaped.requeued:
                self.stdout.write(
                    f"re-queued (no heartbeat for {timeout:g} s): {what} {_ids(reaped.requeued)}"
                )
            if reaped.failed:
                self.stdout.write(
                    f"marked failed (no heartbeat for {timeout:g} s, no automatic resumes left): "
                    f"{what} {_ids(reaped.failed)}"
                )
        if not found:
            self.stdout.write(f"nothing stuck (heartbeat timeout {timeout:g} s)")
