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
from django.conf import settings

from ponas.cost import profile_latency as measure
from ponas.search import Cancelled
from ponas.space import SearchSpace
from tasks.progress import StopOnShutdown, guarded_job, job_task
from webapp.runs.models import DeviceProfile, Status


@shared_task(bind=True, name="tasks.profile.profile_latency")
def profile_latency(self, profile_id: int) -> None:
    """Measure and store one profile; a finished (or deleted) one is left alone, and a second
    copy or a redelivery while it is measured does nothing."""
    job_task(self, DeviceProfile, profile_id, f"profile {profile_id}", "the timing", _measure)


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
    profiles = DeviceProfile.objects.filter(pk=profile_id)
    if not profiles.claim(task.request.hostname or ""):
        return  # cancelled or failed meanwhile
    device = "cuda" if torch.cuda.is_available() else "cpu"
    stop = _Stop(profile_id, holding)

    def timed() -> dict:
        return measure(
            SearchSpace.from_dict(profile.run.space),
            device,
            batch=settings.PONAS_PROFILE_BATCH,
            warmup=settings.PONAS_PROFILE_WARMUP,
            repeats=settings.PONAS_PROFILE_REPEATS,
            progress=stop,
        )

    # (stopped: cancelled, or failed by the watchdog)
    ok, lut = guarded_job(profiles, "timing the blocks", timed, holding, lambda: not stop.running)
    if not ok:
        return
    # (only while still running: a cancel a moment ago wins)
    profiles.finish(Status.SUCCEEDED, of=[Status.RUNNING], lut=lut, device=lut["device"])
