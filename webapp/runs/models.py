"""Searches, their results and deployments. The database is the source of truth for results:
the accuracy table a run serves is rebuilt from its :class:`TableEntry` rows."""

from __future__ import annotations

import hashlib
from pathlib import Path

from django.conf import settings
from django.db import models

from ponas.files import FORMATS as FORMATS  # re-exported: the web app's formats are ponas's


class Status(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE = (Status.QUEUED, Status.RUNNING)


class Stage(models.TextChoices):
    QUEUED = "queued"
    STAGE1 = "stage1", "stage 1: meta-training"
    STAGE2 = "stage2", "stage 2: accuracy table"
    DONE = "done"


class Queue(models.TextChoices):
    """Celery queues a run's heavy tasks (stage 1, candidates, builds) may go to."""

    GPU = "gpu", "gpu: the GPU workers (celery -A webapp worker -Q gpu)"
    DEFAULT = "default", "default: any worker (light searches, e.g. digits)"


class Team(models.Model):
    """People who share their searches: every member sees a team run, picks budgets from its
    table and deploys from it; its owner and the team's admins manage it (``access.py``)."""

    name = models.CharField(max_length=100, unique=True, help_text="what users choose (team)")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """A user in a team, as a member (sees and deploys the team's runs) or an admin (also
    cancels, resumes and deletes them)."""

    class Role(models.TextChoices):
        MEMBER = "member", "member: sees the team's runs and deploys from them"
        ADMIN = "admin", "admin: also cancels, resumes and deletes them"

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=8, choices=Role.choices, default=Role.MEMBER)

    class Meta:
        ordering = ["team", "user"]
        constraints = [
            models.UniqueConstraint(fields=["team", "user"], name="one_membership_per_team_user")
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} ({self.role})"


# Overall progress: stage 1 counts for this fraction, stage 2 (by candidates) for the rest.
STAGE1_SHARE = 0.5


class SearchRun(models.Model):
    """One search: a preset, overrides of its settings, and where it stands."""

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
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    stage = models.CharField(max_length=16, choices=Stage.choices, default=Stage.QUEUED)
    progress = models.FloatField(default=0.0)
    error = models.TextField(blank=True)
    created = models.DateTimeField(auto_now_add=True)
    started = models.DateTimeField(null=True, blank=True)
    stage2_started = models.DateTimeField(
        null=True, blank=True, help_text="when stage 2 (the accuracy table) first began"
    )
    finished = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=255, blank=True, help_text="last worker that ran it")
    heartbeat = models.DateTimeField(null=True, blank=True)
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
    def is_active(self) -> bool:
        return self.status in ACTIVE

    @property
    def has_table(self) -> bool:
        return self.status == Status.SUCCEEDED and self.table_meta is not None


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


class DeviceProfile(models.Model):
    """A device's latency for a run's space: the worker that took the profiling task timed
    every block on its own device (its GPU, else its CPU) and stored the lookup table here,
    named by that device. The deploy panel and the API offer latency budgets per profile."""

    run = models.ForeignKey(SearchRun, on_delete=models.CASCADE, related_name="profiles")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="who asked for it (the run's owner or a member of its team): their quota",
    )
    queue = models.CharField(max_length=16, help_text="the queue whose worker measured it")
    device = models.CharField(max_length=255, blank=True, help_text="what the latency is of")
    lut = models.JSONField(null=True, blank=True, help_text="the ponas-latency/1 lookup table")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    error = models.TextField(blank=True)
    worker = models.CharField(max_length=255, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)
    heartbeat = models.DateTimeField(null=True, blank=True)
    auto_resumes = models.PositiveIntegerField(
        default=0, help_text="times the watchdog re-queued the profile after its worker vanished"
    )

    class Meta:
        ordering = ["run", "id"]

    def __str__(self) -> str:
        return f"profile {self.pk} of run {self.run_id}: {self.device or self.queue}"


class Deployment(models.Model):
    """A network chosen from a run's table for budgets, built (inherited weights, optional
    fine-tune) and exported by a worker. It belongs to its run: whoever sees the run sees it;
    ``requested_by`` (the run's owner or a member of its team) is whose quota it counts in."""

    run = models.ForeignKey(SearchRun, on_delete=models.CASCADE, related_name="deployments")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="who asked for it (the run's owner or a member of its team): their quota",
    )
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
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    error = models.TextField(blank=True)
    worker = models.CharField(max_length=255, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)
    heartbeat = models.DateTimeField(null=True, blank=True)
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


class Audit(models.Model):
    """A check of a run's table on its own data (``ponas.audit``): per MACs budget, networks
    drawn among those of matched cost, each trained from scratch (``seeds`` times) by one
    worker task per training and scored on the test split; the finishing task ranks the
    table's scores and MACs against that truth. It belongs to its run: whoever sees the run
    sees it; ``requested_by`` is whose quota it counts in."""

    run = models.ForeignKey(SearchRun, on_delete=models.CASCADE, related_name="audits")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="who asked for it (the run's owner or a member of its team): their quota",
    )
    budgets = models.JSONField(default=list, help_text="MACs budgets, in the order given")
    networks = models.PositiveIntegerField(help_text="cost-matched networks drawn per budget")
    epochs = models.PositiveIntegerField(help_text="from-scratch training epochs")
    seeds = models.PositiveIntegerField(default=1, help_text="trainings of every network")
    pools = models.JSONField(
        default=list,
        help_text="per budget: the drawn networks (candidate names), their MACs, how many "
        "were cost-matched, and the network the solver deploys",
    )
    estimate = models.JSONField(default=dict, help_text="its cost, as estimated when asked")
    results = models.JSONField(null=True, blank=True, help_text="the ponas.audit report")
    trained = models.PositiveIntegerField(default=0, help_text="trainings done")
    total = models.PositiveIntegerField(default=0, help_text="trainings needed")
    finishing = models.BooleanField(
        default=False, help_text="the finishing task was sent (claimed once)"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    error = models.TextField(blank=True)
    worker = models.CharField(max_length=255, blank=True, help_text="last worker on it")
    created = models.DateTimeField(auto_now_add=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)
    heartbeat = models.DateTimeField(null=True, blank=True)
    auto_resumes = models.PositiveIntegerField(
        default=0, help_text="times the watchdog re-sent its trainings after a worker vanished"
    )
    # Bumped by every re-send of the watchdog: leases of the lost attempt no longer count.
    attempt = models.PositiveIntegerField(default=1)

    class Meta:
        ordering = ["-created", "-id"]
        indexes = [models.Index(fields=["status"])]

    def __str__(self) -> str:
        return f"audit {self.pk} of run {self.run_id} ({self.status})"

    @property
    def progress(self) -> float:
        return self.trained / self.total if self.total else 0.0


class AuditNetwork(models.Model):
    """One training of an audit: a network (candidate names) and a seed, trained from scratch
    by one task; ``accuracy`` is its test accuracy once trained."""

    audit = models.ForeignKey(Audit, on_delete=models.CASCADE, related_name="trainings")
    key = models.CharField(max_length=500, help_text="the recipe, the seed and the network")
    choices = models.JSONField()
    seed = models.PositiveIntegerField(default=0)
    accuracy = models.FloatField(null=True, blank=True, help_text="test accuracy (the truth)")
    seconds = models.FloatField(null=True, blank=True, help_text="the training's wall time")
    worker = models.CharField(max_length=255, blank=True, help_text="the worker that trained it")
    finished = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["audit", "id"]
        constraints = [
            models.UniqueConstraint(fields=["audit", "key"], name="one_training_per_audit_key")
        ]

    def __str__(self) -> str:
        return f"audit {self.audit_id} training {self.pk}: {self.key}"


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


class Dataset(models.Model):
    """A dataset an admin registered: web and API users choose it by name and never see its
    folder. The bundled datasets (``BUNDLED``) need no registration."""

    class Kind(models.TextChoices):
        CIFAR10 = "cifar10", "cifar10: the folder of the CIFAR-10 python batches"
        IMAGEFOLDER = "imagefolder", "imagefolder: train/ and val/ (or test/) class folders"

    name = models.SlugField(
        max_length=64, unique=True, help_text="what users choose (config.dataset)"
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    root = models.CharField(
        max_length=1000, help_text="the folder on the workers; under a PONAS_DATA_ROOTS folder"
    )
    description = models.CharField(max_length=200, blank=True)
    everyone = models.BooleanField(default=False, help_text="every signed-in user may use it")
    users = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="datasets", help_text="may use it"
    )
    groups = models.ManyToManyField(
        "auth.Group", blank=True, related_name="datasets", help_text="their members may use it"
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from webapp.runs.datasets import check_registration

        # stored resolved: a link re-pointed later does not move the dataset (datasets.py)
        self.root = str(check_registration(self.name, self.root))


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
