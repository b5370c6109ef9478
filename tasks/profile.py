"""A device profile: the worker that takes the task times every block of the run's space on
its own device (its GPU when it has one, else its CPU) and stores the latency lookup table,
named by the device. Kept cheap where settings say so (PONAS_PROFILE_*: batch, warm-up and
timed repeats). Like a build, it holds a lease with a heartbeat while it times (a profile
whose worker vanished is re-queued by the watchdog) and stops at its next timed pass once it
is cancelled or its lease is lost."""

from __future__ import annotations

import time

import torch
from celery import shared_task
from celery.exceptions import Reject
from django.conf import settings
from django.utils import timezone

from ponas.cost import profile_latency as measure
from ponas.search import Cancelled
from ponas.space import SearchSpace
from tasks.progress import StopOnShutdown, error_message, heartbeat, leased, log
from webapp.runs.models import ACTIVE, DeviceProfile, Status


@shared_task(bind=True, name="tasks.profile.profile_latency")
def profile_latency(self, profile_id: int) -> None:
    """Measure and store one profile; a finished (or deleted) one is left alone, and a second
    copy or a redelivery while it is measured does nothing."""
    profile = DeviceProfile.objects.select_related("run").filter(pk=profile_id).first()
    if profile is None or profile.status not in ACTIVE:
        return
    with leased(self, f"profile {profile_id}", "the timing", profile=profile) as holding:
        if holding is not None:
            _measure(self, profile, holding)


class _Stop(StopOnShutdown):
    """Progress at every timed pass; stops once the profile is no longer running (cancelled,
    failed by the watchdog), the lease is lost or the worker shuts down. The database is
    read at most once per ``PONAS_POLL_SECONDS``."""

    def __init__(self, profile_id: int, holding) -> None:
        super().__init__(holding)
        self.profile_id, self.polled, self.running = profile_id, 0.0, True

    def __call__(self, done: int, total: int) -> None:
        if self.should_stop():
            raise Cancelled("profile stopped")

    def should_stop(self) -> bool:
        if super().should_stop():
            return True
        if time.monotonic() - self.polled >= settings.PONAS_POLL_SECONDS:
            self.polled = time.monotonic()
            self.running = DeviceProfile.objects.filter(
                pk=self.profile_id, status=Status.RUNNING
            ).exists()
        return not self.running


def _measure(task, profile: DeviceProfile, holding) -> None:
    profile_id = profile.pk
    if not DeviceProfile.objects.filter(pk=profile_id, status__in=ACTIVE).update(
        status=Status.RUNNING, started=timezone.now(), worker=task.request.hostname or ""
    ):
        return  # cancelled or failed meanwhile
    device = "cuda" if torch.cuda.is_available() else "cpu"
    running = DeviceProfile.objects.filter(pk=profile_id, status=Status.RUNNING)
    stop = _Stop(profile_id, holding)
    try:
        with heartbeat(DeviceProfile.objects.filter(pk=profile_id), holding):
            lut = measure(
                SearchSpace.from_dict(profile.run.space),
                device,
                batch=settings.PONAS_PROFILE_BATCH,
                warmup=settings.PONAS_PROFILE_WARMUP,
                repeats=settings.PONAS_PROFILE_REPEATS,
                progress=stop,
            )
    except Cancelled:
        if holding.lost or not stop.running:
            log.info("profile %s stopped (cancelled, or taken over)", profile_id)
            return
        raise Reject("worker shutting down", requeue=True) from None
    except Exception as exc:
        log.exception("profile %s failed", profile_id)
        running.update(
            status=Status.FAILED,
            error=f"timing the blocks failed: {error_message(exc)}",
            finished=timezone.now(),
        )
        return
    # (only while still running: a cancel a moment ago wins)
    running.update(status=Status.SUCCEEDED, lut=lut, device=lut["device"], finished=timezone.now())
