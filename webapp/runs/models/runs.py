"""Searches and what they produce as they go: the run itself (its settings, stage and
progress), its training curve and its accuracy table. The database is the source of truth
for results: the table a run serves is rebuilt from its :class:`TableEntry` rows."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db import models

from ponas.files import CHECKPOINT_DIR
from ponas.noise import NOISE_FILE
from webapp.runs.models.base import Lifecycle, Status
from webapp.runs.models.teams import Team


class Stage(models.TextChoices):
    QUEUED = "queued"
    STAGE1 = "stage1", "stage 1: meta-training"
    STAGE2 = "stage2", "stage 2: accuracy table"
    DONE = "done"


class Queue(models.TextChoices):
    """Celery queues a run's heavy tasks (stage 1, candidates, builds) may go to."""

    GPU = "gpu", "gpu: the GPU workers (celery -A webapp worker -Q gpu)"
    DEFAULT = "default", "default: any worker (light searches, e.g. digits)"


# Overall progress: stage 1 counts for this fraction, stage 2 (by candidates) for the rest.
STAGE1_SHARE = 0.5

# The settings a redraw (stage 2 again on another run's supernet) may change: stage 2's alone
# (SearchConfig validates their values); stage 1's are the source run's, trained once.
REDRAW_SETTINGS = (
    "stage2_seed",
    "eval_batches",
    "suffix_samples",
    "finetune_steps",
    "finetune_lr",
    "bn_batches",
    "score",
    "context",
)


class SearchRun(Lifecycle):
    """One search: a preset, overrides of its settings, and where it stands (its lifecycle:
    :class:`Lifecycle`)."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="runs"
    )
    team = models.ForeignKey(
        Team,
        null=True,
        blank=True,
        on_delete=models.PROTECT,  # a team with runs is not deleted by accident
        related_name="runs",
        help_text="the team that shares the run (empty: only its owner sees it)",
    )
    name = models.CharField(max_length=200, blank=True)
    preset = models.CharField(max_length=64)
    config = models.JSONField(
        default=dict, blank=True, help_text="overrides of the preset's settings"
    )
    queue = models.CharField(
        max_length=16,
        choices=Queue.choices,
        default=Queue.GPU,
        help_text="Celery queue of the heavy tasks (stage 1, candidates, deployment builds)",
    )
    stage = models.CharField(max_length=16, choices=Stage.choices, default=Stage.QUEUED)
    progress = models.FloatField(default=0.0)
    stage2_started = models.DateTimeField(
        null=True, blank=True, help_text="when stage 2 (the accuracy table) first began"
    )
    # (Lifecycle.worker with its own help text)
    worker = models.CharField(max_length=255, blank=True, help_text="last worker that ran it")
    cancel_requested = models.BooleanField(default=False)
    # Bumped by every resume: tasks of an earlier attempt still in a queue do nothing.
    attempt = models.PositiveIntegerField(default=1)
    auto_resumes = models.PositiveIntegerField(
        default=0,
        help_text="times the watchdog re-queued the run after its worker vanished (since it was created or last resumed by hand)",
    )
    current_layer = models.PositiveIntegerField(default=0, help_text="stage-2 layer being scored")
    # Layers whose closing has been claimed by their last finished candidate (one claim each).
    closed_layers = models.PositiveIntegerField(default=0)
    # Filled as the search goes: the space spec (after stage 1), the chosen path (per layer),
    # and the table's base cost and meta (at the end). With the TableEntry rows they make the
    # ponas-table/1 file.
    space = models.JSONField(null=True, blank=True)
    base_cost = models.JSONField(null=True, blank=True)
    path = models.JSONField(default=list, blank=True)
    table_meta = models.JSONField(null=True, blank=True)
    # A redraw: stage 2 again on this run's stage-1 supernet with another stage-2 seed (its
    # entry noise against that run's table is its noise.json).
    source_run = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="redraws",
        help_text="the run whose stage-1 supernet this run's stage 2 ran on again (a redraw)",
    )

    class Meta:
        ordering = ["-created", "-id"]
        indexes = [models.Index(fields=["owner", "-created"]), models.Index(fields=["status"])]

    def __str__(self) -> str:
        return f"run {self.pk} {self.name or self.preset} ({self.status})"

    @property
    def out_dir(self) -> Path:
        """The search's output folder, inside the artifact store (shared by all workers)."""
        return Path(settings.MEDIA_ROOT) / self.storage_prefix

    @property
    def storage_prefix(self) -> str:
        return f"runs/{self.pk}"

    @property
    def has_table(self) -> bool:
        return self.status == Status.SUCCEEDED and self.table_meta is not None

    @property
    def stage1_checkpoint(self) -> Path:
        """The run's stage-1 checkpoint (what a redraw of it starts stage 2 from)."""
        return self.out_dir / CHECKPOINT_DIR / "stage1.pt"

    @property
    def noise_file(self) -> Path:
        """A redraw's entry noise against its source run (ponas-noise/1), once it succeeded."""
        return self.out_dir / NOISE_FILE


class MetricPoint(models.Model):
    """A point of a training curve: an epoch end or a (throttled) step of a stage."""

    class Kind(models.TextChoices):
        STEP = "step"
        EPOCH = "epoch"

    run = models.ForeignKey(SearchRun, on_delete=models.CASCADE, related_name="metrics")
    stage = models.CharField(max_length=16, choices=Stage.choices)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    step = models.PositiveIntegerField(help_text="global step, or the epoch number for epochs")
    values = models.JSONField(help_text='e.g. {"train_loss": 0.4, "train_acc": 0.9}')
    time = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["run", "stage", "kind", "step"]
        constraints = [
            # a replayed epoch (resume) overwrites its point instead of duplicating it
            models.UniqueConstraint(
                fields=["run", "stage", "kind", "step"], name="one_point_per_step"
            )
        ]

    def __str__(self) -> str:
        return f"{self.run_id} {self.stage} {self.kind} {self.step}"


class TableEntry(models.Model):
    """``A[layer][candidate]``: one cell of a run's accuracy table, with the block's costs."""

    run = models.ForeignKey(SearchRun, on_delete=models.CASCADE, related_name="entries")
    layer = models.PositiveIntegerField()
    candidate = models.CharField(max_length=32)
    accuracy = models.FloatField()
    stderr = models.FloatField(
        null=True, blank=True, help_text="standard error of the accuracy over its suffixes"
    )
    macs = models.BigIntegerField()
    params = models.BigIntegerField()
    latency_ms = models.FloatField(null=True, blank=True)
    worker = models.CharField(max_length=255, blank=True, help_text="worker that scored it")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "layer", "id"]
        constraints = [
            models.UniqueConstraint(fields=["run", "layer", "candidate"], name="one_entry_per_cell")
        ]
        verbose_name_plural = "table entries"

    def __str__(self) -> str:
        return f"run {self.run_id} layer {self.layer} {self.candidate}: {self.accuracy:.4f}"
