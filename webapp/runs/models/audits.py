"""Table audits: a run's table checked against networks trained from scratch, one row per
audit (its lifecycle is :class:`~webapp.runs.models.base.Job`'s) and one per training."""

from __future__ import annotations

from django.db import models

from webapp.runs.models.base import Job
from webapp.runs.models.runs import SearchRun


class Audit(Job):
    """A check of a run's table on its own data (``ponas.audit``): per MACs budget, networks
    drawn among those of matched cost, each trained from scratch (``seeds`` times) by one
    worker task per training and scored on the test split; the finishing task ranks the
    table's scores and MACs against that truth. It belongs to its run: whoever sees the run
    sees it; ``requested_by`` is whose quota it counts in."""

    run = models.ForeignKey(SearchRun, on_delete=models.CASCADE, related_name="audits")
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
    # (Lifecycle.worker with its own help text)
    worker = models.CharField(max_length=255, blank=True, help_text="last worker on it")
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
