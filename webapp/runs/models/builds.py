"""What a worker builds from a run's table: device profiles (a device's latency lookup
table), deployments (a chosen network, built and exported) and the artifact store's files of
runs and deployments. Their lifecycle is :class:`~webapp.runs.models.base.Job`'s."""

from __future__ import annotations

import hashlib
from pathlib import Path

from django.conf import settings
from django.db import models

from webapp.runs.models.base import Job
from webapp.runs.models.runs import Queue, SearchRun


class DeviceProfile(Job):
    """A device's latency for a run's space: the worker that took the profiling task timed
    every block on its own device (its GPU, else its CPU) and stored the lookup table here,
    named by that device. The deploy panel and the API offer latency budgets per profile."""

    run = models.ForeignKey(SearchRun, on_delete=models.CASCADE, related_name="profiles")
    queue = models.CharField(max_length=16, help_text="the queue whose worker measured it")
    device = models.CharField(max_length=255, blank=True, help_text="what the latency is of")
    lut = models.JSONField(null=True, blank=True, help_text="the ponas-latency/1 lookup table")
    auto_resumes = models.PositiveIntegerField(
        default=0, help_text="times the watchdog re-queued the profile after its worker vanished"
    )

    class Meta:
        ordering = ["run", "id"]

    def __str__(self) -> str:
        return f"profile {self.pk} of run {self.run_id}: {self.device or self.queue}"


class Deployment(Job):
    """A network chosen from a run's table for budgets, built (inherited weights, optional
    fine-tune) and exported by a worker. It belongs to its run: whoever sees the run sees it;
    ``requested_by`` (the run's owner or a member of its team) is whose quota it counts in."""

    run = models.ForeignKey(SearchRun, on_delete=models.CASCADE, related_name="deployments")
    max_macs = models.FloatField(null=True, blank=True)
    max_params = models.FloatField(null=True, blank=True)
    max_latency_ms = models.FloatField(null=True, blank=True)
    profile = models.ForeignKey(
        DeviceProfile,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="deployments",
        help_text="the device profile whose latency the network was chosen under",
    )
    finetune_epochs = models.PositiveIntegerField(default=0)
    formats = models.JSONField(default=list)
    choices = models.JSONField(default=list)
    predicted_score = models.FloatField(null=True, blank=True, help_text="sum of A[l][c_l]")
    score_stderr = models.FloatField(
        null=True, blank=True, help_text="standard error of predicted_score (null: not recorded)"
    )
    queue = models.CharField(
        max_length=16,
        default=Queue.GPU,
        help_text="where its build goes: the run's queue, if whoever asked may send work there",
    )
    cost = models.JSONField(default=dict)
    measured_accuracy = models.FloatField(null=True, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    auto_resumes = models.PositiveIntegerField(
        default=0, help_text="times the watchdog re-queued the build after its worker vanished"
    )

    class Meta:
        ordering = ["-created", "-id"]
        indexes = [models.Index(fields=["status"])]

    def __str__(self) -> str:
        return f"deployment {self.pk} of run {self.run_id} ({self.status})"

    @property
    def budgets(self) -> dict[str, float]:
        values = {
            "macs": self.max_macs,
            "params": self.max_params,
            "latency_ms": self.max_latency_ms,
        }
        return {k: v for k, v in values.items() if v is not None}

    @property
    def storage_prefix(self) -> str:
        return f"runs/{self.run_id}/deployments/{self.pk}"

    @property
    def out_dir(self) -> Path:
        return Path(settings.MEDIA_ROOT) / self.storage_prefix


class Artifact(models.Model):
    """A file in the artifact store, produced by a run or a deployment."""

    class Kind(models.TextChoices):
        TABLE = "table"
        SUPERNET = "supernet"
        CHECKPOINT = "checkpoint"
        PT = "pt"
        PT2 = "pt2"
        TORCHSCRIPT = "torchscript"
        ONNX = "onnx"
        MODEL_CARD = "model_card"

    run = models.ForeignKey(
        SearchRun, null=True, blank=True, on_delete=models.CASCADE, related_name="artifacts"
    )
    deployment = models.ForeignKey(
        Deployment, null=True, blank=True, on_delete=models.CASCADE, related_name="artifacts"
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    file = models.FileField(max_length=500)
    size = models.BigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(run__isnull=False, deployment__isnull=True)
                | models.Q(run__isnull=True, deployment__isnull=False),
                name="artifact_of_run_or_deployment",
            ),
            models.UniqueConstraint(fields=["file"], name="one_artifact_per_file"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.file.name}"

    @property
    def path(self) -> Path:
        """The file, resolved (links too) inside the artifact store; a name that leads out of
        it (``../``, an absolute path, a link to elsewhere) raises FileNotFoundError."""
        root = Path(settings.MEDIA_ROOT).resolve()
        name = str(self.file.name or "")
        path = (root / name).resolve()
        if not name or Path(name).is_absolute() or not path.is_relative_to(root) or path == root:
            raise FileNotFoundError(f"artifact {self.pk}: {name!r} is outside the artifact store")
        return path

    def open(self):
        """The file for reading (see :attr:`path`)."""
        return open(self.path, "rb")

    @classmethod
    def record(cls, path: Path, kind: str, *, run=None, deployment=None) -> Artifact:
        """Register (or refresh) a file already written under MEDIA_ROOT; size and sha256."""
        name = Path(path).resolve().relative_to(Path(settings.MEDIA_ROOT).resolve()).as_posix()
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        artifact, _ = cls.objects.update_or_create(
            file=name,
            defaults={
                "kind": kind,
                "run": run,
                "deployment": deployment,
                "size": Path(path).stat().st_size,
                "sha256": digest.hexdigest(),
            },
        )
        return artifact
