"""Shared glue of the tasks: progress recording, the cancel switch, failure handling."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from celery.exceptions import Reject
from celery.signals import worker_shutting_down
from django.conf import settings
from django.db import connection
from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone

from ponas.search import Cancelled, SearchCallback
from webapp.runs.leases import CrashLoop, Holding, take
from webapp.runs.models import (
    ACTIVE,
    STAGE1_SHARE,
    Audit,
    Deployment,
    DeviceProfile,
    Job,
    JobQuerySet,
    MetricPoint,
    SearchRun,
    Stage,
    Status,
)

log = logging.getLogger("tasks")
T = TypeVar("T")

# Step points of the training curve are stored at most this often (epoch ends always are).
STEP_POINT_SECONDS = 5.0

_shutting_down = False


@worker_shutting_down.connect
def _stop_at_next_step(**_: Any) -> None:
    # In a solo-pool worker (one task at a time, in the worker's own process) a warm shutdown
    # (Ctrl-C, SIGTERM) makes the running search stop at its next step and go back to the
    # queue; the next worker continues from the last checkpoint.
    global _shutting_down
    _shutting_down = True


class StopOnShutdown(SearchCallback):
    """Stops the work at its next step when the worker shuts down (it goes back to the queue)
    or when its lease was taken over (another process does the work now)."""

    def __init__(self, holding: Holding | None = None) -> None:
        self.holding = holding

    def should_stop(self) -> bool:
        # polled at every step boundary: the work makes progress, its lease may be renewed
        if self.holding is not None:
            self.holding.progress()
        return _shutting_down or (self.holding is not None and self.holding.lost)


class RunRecorder(StopOnShutdown):
    """Records a search task's progress in its run: heartbeat, progress, metric points; and
    reads the run's cancel flag. Database work is throttled to one poll per
    ``PONAS_POLL_SECONDS``.

    With a ``budget`` (seconds), stage 1 pauses after the last whole epoch that fits in it
    (it asks to stop at the next step, with that epoch's checkpoint written): ``paused`` then
    tells the task to send the next chunk instead of cancelling."""

    def __init__(
        self,
        run: SearchRun,
        worker: str,
        holding: Holding | None = None,
        budget: float | None = None,
    ) -> None:
        super().__init__(holding)
        self.run_id, self.attempt, self.worker = run.pk, run.attempt, worker
        self.progress: float | None = None
        self.last_poll = self.last_point = 0.0
        self.stop = self.paused = False
        self.budget, self.began = budget, time.monotonic()
        self.epoch_began = self.began

    def step(self, stage: str, step: int, total_steps: int, metrics: dict[str, float]) -> None:
        if stage != Stage.STAGE1:
            return
        self.progress = STAGE1_SHARE * step / max(total_steps, 1)
        now = time.monotonic()
        if now - self.last_point >= STEP_POINT_SECONDS:
            self.last_point = now
            self._point(MetricPoint.Kind.STEP, step, metrics)

    def epoch_end(self, epoch: int, epochs: int, metrics: dict[str, float]) -> None:
        self._point(MetricPoint.Kind.EPOCH, epoch, metrics)
        log.info(
            "run %s: stage 1 epoch %s of %s trained by %s", self.run_id, epoch, epochs, self.worker
        )
        now = time.monotonic()
        took, self.epoch_began = now - self.epoch_began, now
        if self.budget is not None and epoch < epochs and now - self.began + took > self.budget:
            self.paused = True  # the next epoch would not fit: the next task trains it

    def _point(self, kind: str, step: int, values: dict[str, float]) -> None:
        # update_or_create: an epoch replayed after a resume overwrites its point
        MetricPoint.objects.update_or_create(
            run_id=self.run_id,
            stage=Stage.STAGE1,
            kind=kind,
            step=step,
            defaults={"values": {k: float(v) for k, v in values.items()}},
        )

    def should_stop(self) -> bool:
        now = time.monotonic()
        if self.paused or super().should_stop():
            return True
        if now - self.last_poll < settings.PONAS_POLL_SECONDS:
            return self.stop
        self.last_poll = now
        updates: dict[str, Any] = {"heartbeat": timezone.now(), "worker": self.worker}
        if self.progress is not None:
            updates["progress"] = self.progress
        runs = SearchRun.objects.filter(pk=self.run_id)
        runs.update(**updates)
        state = runs.values_list("cancel_requested", "attempt", "status").first()
        # stop too when the run is no longer active (e.g. the watchdog marked it failed)
        self.stop = state is None or state[0] or state[1] != self.attempt or state[2] not in ACTIVE
        return self.stop


def begin_stage2(run: SearchRun) -> None:
    """Stage 1 is done: the run moves to stage 2, whose start is recorded the first time (a
    resumed run keeps it, as it keeps ``started``)."""
    run.stage, run.progress = Stage.STAGE2, STAGE1_SHARE
    SearchRun.objects.filter(pk=run.pk).update(
        stage=run.stage,
        progress=run.progress,
        stage2_started=Coalesce(F("stage2_started"), timezone.now()),
    )


def error_message(exc: BaseException) -> str:
    """What a user reads: ponas raises ValueErrors with readable messages; for anything else
    the exception's type says more than its text."""
    text = str(exc).strip() or type(exc).__name__
    return text if isinstance(exc, ValueError) else f"{type(exc).__name__}: {text}"


def mark(run_id: int, attempt: int, status: str, error: str = "") -> bool:
    """Move an active run of this attempt to a final status; False if it was not active."""
    return bool(SearchRun.objects.filter(pk=run_id, attempt=attempt).finish(status, error=error))


@contextmanager
def leased(
    task,
    key: str,
    what: str,
    run: SearchRun | None = None,
    deployment: Deployment | None = None,
    audit: Audit | None = None,
    profile: DeviceProfile | None = None,
) -> Iterator[Holding | None]:
    """The lease ``key`` (see :mod:`webapp.runs.leases`) for this task while the block runs,
    released after; None when a live process holds it (this copy must do nothing) or when
    processes died holding it too often (then the run, build, profile or audit is marked
    failed here)."""
    attempt = run.attempt if run is not None else audit.attempt if audit is not None else 0
    worker, task_id = task.request.hostname or "", task.request.id or ""
    try:
        holding = take(
            key,
            worker,
            task_id,
            what,
            attempt=attempt,
            run=run,
            deployment=deployment,
            audit=audit,
            profile=profile,
        )
    except CrashLoop as exc:
        log.error("%s: %s", key, exc)
        if run is not None:
            if mark(run.pk, attempt, Status.FAILED, str(exc)):
                end_tracking(run, str(exc))
        else:
            job = deployment or profile or audit
            type(job).objects.filter(pk=job.pk).fail(str(exc))
        holding = None
    else:
        if holding is None:
            log.warning("%s: a live worker holds it; this delivery does nothing", key)
        else:
            log.info("%s: lease taken by %s (task %s)", key, worker, holding.task_id)
    try:
        yield holding
    finally:
        if holding is not None:
            holding.release()


def job_task(
    task, model: type[Job], pk: int, key: str, what: str, work: Callable[..., None]
) -> None:
    """How the task of a build, a profile or an audit's finish begins: ``work(task, job,
    holding)`` under the lease ``key``, if the job (loaded with its run) still exists and is
    active and no live process holds the lease."""
    job = model.objects.select_related("run").filter(pk=pk).first()
    if job is None or job.status not in ACTIVE:
        return
    owner = model._meta.get_field("leases").field.name  # the Lease's field that names it
    with leased(task, key, what, **{owner: job}) as holding:
        if holding is not None:
            work(task, job, holding)


def guarded_job(
    jobs: JobQuerySet,
    what: str,
    fn: Callable[[], T],
    holding: Holding,
    stopped: Callable[[], bool] = lambda: False,
) -> tuple[bool, T | None]:
    """``fn()`` under the heartbeat of ``jobs`` (a build or a profile, claimed) with its
    failure handling; ``(True, result)`` if it completed.

    Cancelled -> it just stops when its lease was taken over or ``stopped()`` (e.g. it was
    cancelled meanwhile), else the worker is shutting down and the task goes back to the
    queue; any other error -> the job failed (if still running), its ``error`` saying that
    ``what`` failed, the traceback in the worker's log (named by the lease's key).
    """
    try:
        with heartbeat(jobs, holding):
            return True, fn()
    except Cancelled:
        if holding.lost:
            log.warning("%s lost its lease to another worker; stopped", holding.key)
            return False, None
        if stopped():
            log.info("%s stopped (cancelled)", holding.key)
            return False, None
        raise Reject("worker shutting down", requeue=True) from None
    except Exception as exc:
        log.exception("%s failed", holding.key)
        jobs.fail(f"{what} failed: {error_message(exc)}", of=[Status.RUNNING])
        return False, None


def end_tracking(run: SearchRun, error: str) -> None:
    """The run failed: its MLflow run (if it has one) ends FAILED instead of staying
    RUNNING (a candidate's or a layer's task logs nothing else there)."""
    from tasks.tracking import run_tracking

    try:
        with run_tracking(run) as tracking:
            tracking.failed(error)
    except Exception:  # tracking never costs the run more than a warning
        log.warning("run %s: could not end its tracking", run.pk, exc_info=True)


@contextmanager
def heartbeat(work: JobQuerySet, holding: Holding | None = None) -> Iterator[None]:
    """While the block runs, a thread writes the ``heartbeat`` of ``work`` (a run of this
    attempt, a deployment, a profile; still running) and renews ``holding`` every
    ``PONAS_HEARTBEAT_SECONDS`` while the work makes progress (``holding.progress()``, bumped
    at every step boundary the work polls): long work between steps (an evaluation, BN
    recalibration, checkpoint writes, exports) never looks like a vanished worker to the
    watchdog, while work that has not moved for ``PONAS_PROGRESS_TIMEOUT`` (a hung step) lets
    its lease expire. A renewal that finds the lease taken marks it ``lost`` (the work then
    stops)."""
    work.beat()
    stop = threading.Event()

    def beat() -> None:
        try:
            while not stop.wait(settings.PONAS_HEARTBEAT_SECONDS):
                try:
                    if holding is None or not holding.stalled():  # hung work: no sign of life
                        work.beat()
                    if holding is not None and not holding.renew():
                        holding.lost = True
                except Exception:  # a database hiccup must not kill the work
                    log.exception("%s: heartbeat not written", work.model._meta.verbose_name)
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=beat, name="heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)


def guarded(
    run: SearchRun, what: str, fn: Callable[[], T], holding: Holding | None = None
) -> tuple[bool, T | None]:
    """``fn()`` with a run's failure handling; ``(True, result)`` if it completed.

    Cancelled -> the run is cancelled (or, when the worker is shutting down, the task goes
    back to the queue; when its lease ``holding`` was taken over, it just stops); any other
    error -> the run failed, with a readable message in ``error`` and the traceback in the
    worker's log.
    """
    try:
        with heartbeat(SearchRun.objects.filter(pk=run.pk, attempt=run.attempt), holding):
            return True, fn()
    except Cancelled:
        if _shutting_down:
            raise Reject("worker shutting down", requeue=True) from None
        if holding is not None and holding.lost:
            log.warning("run %s: %s lost its lease to another worker; stopped", run.pk, what)
            return False, None
        if mark(run.pk, run.attempt, Status.CANCELLED):
            log.info("run %s cancelled during %s", run.pk, what)
        return False, None
    except Exception as exc:
        log.exception("run %s: %s failed", run.pk, what)
        message = f"{what} failed: {error_message(exc)}"
        if mark(run.pk, run.attempt, Status.FAILED, message):
            end_tracking(run, message)
        return False, None
