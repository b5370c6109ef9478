"""The worker fleet as the database sees it: leases (who works on which piece of work right
now) and the workers' own records."""

from __future__ import annotations

from django.db import models

from webapp.runs.models.audits import Audit
from webapp.runs.models.builds import Deployment, DeviceProfile
from webapp.runs.models.runs import SearchRun


class Lease(models.Model):
    """Who works on a piece of a run (stage 1, a candidate, closing a layer), on a build or on
    a device profile right now: the worker process (by its random ``token``) and the Celery
    task. The task's heartbeat renews it while its work makes progress; one not renewed for
    ``PONAS_HEARTBEAT_TIMEOUT`` seconds, or whose work made no progress for
    ``PONAS_PROGRESS_TIMEOUT``, has expired (:mod:`webapp.runs.leases`). A second copy of the
    task or a redelivery finds a live lease and does nothing. A released lease (``task_id``
    empty) keeps its row: ``deaths`` counts the processes that died holding it in this attempt
    (a crash loop ends the run)."""

    key = models.CharField(max_length=200, unique=True, help_text='e.g. "run 5 stage1"')
    run = models.ForeignKey(
        SearchRun, null=True, blank=True, on_delete=models.CASCADE, related_name="leases"
    )
    deployment = models.ForeignKey(
        Deployment, null=True, blank=True, on_delete=models.CASCADE, related_name="leases"
    )
    audit = models.ForeignKey(
        Audit, null=True, blank=True, on_delete=models.CASCADE, related_name="leases"
    )
    profile = models.ForeignKey(
        DeviceProfile, null=True, blank=True, on_delete=models.CASCADE, related_name="leases"
    )
    attempt = models.PositiveIntegerField(default=0)
    worker = models.CharField(max_length=255, blank=True, help_text="the worker's name")
    host = models.CharField(max_length=255, blank=True, help_text="the machine's host name")
    pid = models.PositiveIntegerField(default=0, help_text="the process that holds it")
    token = models.CharField(
        max_length=64, blank=True, help_text="the holding process's random token (its identity)"
    )
    namespace = models.CharField(
        max_length=200,
        blank=True,
        help_text="the holder's boot and pid namespace: where its pid can be checked",
    )
    task_id = models.CharField(max_length=64, blank=True, help_text="empty once released")
    taken = models.DateTimeField(null=True, blank=True)
    renewed = models.DateTimeField(null=True, blank=True, help_text="the last heartbeat")
    progress = models.DateTimeField(
        null=True, blank=True, help_text="the last progress of its work (a step, an evaluation)"
    )
    deaths = models.PositiveIntegerField(
        default=0, help_text="processes that died holding it (in this attempt)"
    )

    class Meta:
        ordering = ["key"]
        indexes = [models.Index(fields=["renewed"])]

    def __str__(self) -> str:
        return f"{self.key}: {self.worker or 'free'}"

    @property
    def held(self) -> bool:
        return bool(self.task_id)


class Worker(models.Model):
    """A Celery worker as it records itself (on start, then with its watchdog's heartbeat):
    what the workers page and ``GET /api/workers/`` show."""

    name = models.CharField(max_length=255, unique=True, help_text="e.g. gpu1@host")
    queues = models.JSONField(default=list)
    device = models.CharField(max_length=200, blank=True, help_text="CPU, or the GPU model")
    torch_version = models.CharField(max_length=64, blank=True)
    pid = models.PositiveIntegerField(default=0)
    token = models.CharField(
        max_length=64, blank=True, help_text="the worker process's random token (leases name it)"
    )
    current_task = models.CharField(max_length=200, blank=True)
    started = models.DateTimeField()
    last_seen = models.DateTimeField()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
