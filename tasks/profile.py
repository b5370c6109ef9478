"""A device profile: the worker that takes the task times every block of the run's space on
its own device (its GPU when it has one, else its CPU) and stores the latency lookup table,
named by the device. Kept cheap where settings say so (PONAS_PROFILE_*: batch, warm-up and
timed repeats)."""

from __future__ import annotations

import torch
from celery import shared_task
from django.conf import settings
from django.utils import timezone

from ponas.cost import profile_latency as measure
from ponas.space import SearchSpace
from tasks.progress import error_message, log
from webapp.runs.models import DeviceProfile, Status


@shared_task(bind=True, name="tasks.profile.profile_latency")
def profile_latency(self, profile_id: int) -> None:
    """Measure and store one profile; a finished (or deleted) one is left alone."""
    claimed = DeviceProfile.objects.filter(pk=profile_id, status=Status.QUEUED).update(
        status=Status.RUNNING, started=timezone.now(), worker=self.request.hostname or ""
    )
    if not claimed:
        return
    profile = DeviceProfile.objects.select_related("run").get(pk=profile_id)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        lut = measure(
            SearchSpace.from_dict(profile.run.space),
            device,
            batch=settings.PONAS_PROFILE_BATCH,
            warmup=settings.PONAS_PROFILE_WARMUP,
            repeats=settings.PONAS_PROFILE_REPEATS,
        )
    except Exception as exc:
        log.exception("profile %s failed", profile_id)
        DeviceProfile.objects.filter(pk=profile_id).update(
            status=Status.FAILED,
            error=f"timing the blocks failed: {error_message(exc)}",
            finished=timezone.now(),
        )
        return
    DeviceProfile.objects.filter(pk=profile_id).update(
        status=Status.SUCCEEDED, lut=lut, device=lut["device"], finished=timezone.now()
    )
