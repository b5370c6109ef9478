"""One lifecycle for every job-like row (a search, a build, a device profile, an audit): its
status and timestamps, the worker on it, its heartbeat, and every status change as a
conditional UPDATE written once here (:class:`JobQuerySet`), which only one caller wins.

    queued --claim--> running --finish--> succeeded | failed | cancelled
       ^                 |
       +----requeue------+   (the watchdog: its worker vanished)
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.conf import settings
from django.db import models
from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone


class Status(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE = (Status.QUEUED, Status.RUNNING)

# The last sign of life of running work: its heartbeat, else its start.
LAST_SIGN = Coalesce(F("heartbeat"), F("started"), F("created"))


class JobQuerySet(models.QuerySet):
    """The status changes of the jobs in this queryset (narrow it first: ``pk``, the current
    ``attempt`` ...); each is one conditional UPDATE and returns how many rows it moved."""

    def claim(self, worker: str, *, keep_started: bool = False, **fields) -> int:
        """Queued or running (a redelivery, a later task of the same job) -> running on
        ``worker``. ``started`` is now (the job starts over), or with ``keep_started`` its
        first start (a search resumed, an audit's next training)."""
        now = timezone.now()
        started = Coalesce(F("started"), now) if keep_started else now
        return self.filter(status__in=ACTIVE).update(
            status=Status.RUNNING, started=started, worker=worker, **fields
        )

    def finish(
        self,
        status: str,
        *,
        error: str | None = None,
        of: Iterable[str] | None = ACTIVE,
        now: datetime | None = None,
        **fields,
    ) -> int:
        """The jobs whose status is among ``of`` (None: whatever it is) -> the final ``status``,
        ``finished`` now; ``error`` and ``fields`` written with it (an error left as it is
        when None)."""
        jobs = self if of is None else self.filter(status__in=tuple(of))
        if error is not None:
            fields["error"] = error
        return jobs.update(status=status, finished=now or timezone.now(), **fields)

    def fail(self, error: str, *, of: Iterable[str] | None = ACTIVE, **fields) -> int:
        """:meth:`finish` as failed, with the reason its user reads."""
        return self.finish(Status.FAILED, error=error, of=of, **fields)

    def requeue(self, **fields) -> int:
        """Running (its worker vanished) -> queued again, on no worker; ``fields`` (e.g.
        ``auto_resumes``, a new ``attempt``) written with it."""
        return self.filter(status=Status.RUNNING).update(status=Status.QUEUED, worker="", **fields)

    def beat(self) -> int:
        """A heartbeat of the running ones: their worker is alive and on them."""
        return self.filter(status=Status.RUNNING).update(heartbeat=timezone.now())


class Lifecycle(models.Model):
    """Where a job stands: its status (changed only through :class:`JobQuerySet`), why it
    failed, the worker on it, when it was created, started and finished, and the heartbeat
    its worker writes while it runs (the watchdog re-queues a job whose heartbeat stops)."""

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    error = models.TextField(blank=True)
    worker = models.CharField(max_length=255, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)
    heartbeat = models.DateTimeField(null=True, blank=True)

    objects = JobQuerySet.as_manager()

    class Meta:
        abstract = True

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE


class Job(Lifecycle):
    """Work someone asked for on a run (a build, a device profile, an audit):
    ``requested_by`` is whose quota it counts in."""

    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="who asked for it (the run's owner or a member of its team): their quota",
    )

    class Meta:
        abstract = True
