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
from django.db.models import F, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone

from ponas.search import Cancelled, SearchCallback
from webapp.runs.models import ACTIVE, STAGE1_SHARE, MetricPoint, SearchRun, Stage, Status

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
    """Stops the work at its next step when the worker shuts down (it goes back to the queue)."""

    def should_stop(self) -> bool:
        return _shutting_down


class RunRecorder(SearchCallback):
    """Records a search task's progress in its run: heartbeat, progress, metric points; and
    reads the run's cancel flag. Database work is throttled to one poll per
    ``PONAS_POLL_SECONDS``."""

    def __init__(self, run: SearchRun, worker: str) -> None:
        self.run_id, self.attempt, self.worker = run.pk, run.attempt, worker
        self.progress: float | None = None
        self.last_poll = self.last_point = 0.0
        self.stop = False

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
        if _shutting_down:
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
    return bool(
        SearchRun.objects.filter(pk=run_id, attempt=attempt, status__in=ACTIVE).update(
            status=status, error=error, finished=timezone.now()
        )
    )


@contextmanager
def heartbeat(work: QuerySet) -> Iterator[None]:
    """While the block runs, a thread writes the ``heartbeat`` of ``work`` (a run of this
    attempt, a deployment; still running) every ``PONAS_HEARTBEAT_SECONDS``: long work without
    step callbacks (evaluation, BN recalibration, checkpoint writes, exports) never looks like
    a vanished worker to the watchdog."""
    work = work.filter(status=Status.RUNNING)
    work.update(heartbeat=timezone.now())
    stop = threading.Event()

    def beat() -> None:
        try:
            while not stop.wait(settings.PONAS_HEARTBEAT_SECONDS):
                try:
                    work.update(heartbeat=timezone.now())
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


def guarded(run: SearchRun, what: str, fn: Callable[[], T]) -> tuple[bool, T | None]:
    """``fn()`` with a run's failure handling; ``(True, result)`` if it completed.

    Cancelled -> the run is cancelled (or, when the worker is shutting down, the task goes
    back to the queue); any other error -> the run failed, with a readable message in
    ``error`` and the traceback in the worker's log.
    """
    try:
        with heartbeat(SearchRun.objects.filter(pk=run.pk, attempt=run.attempt)):
            return True, fn()
    except Cancelled:
        if _shutting_down:
            raise Reject("worker shutting down", requeue=True) from None
        if mark(run.pk, run.attempt, Status.CANCELLED):
            log.info("run %s cancelled during %s", run.pk, what)
        return False, None
    except Exception as exc:
        log.exception("run %s: %s failed", run.pk, what)
        mark(run.pk, run.attempt, Status.FAILED, f"{what} failed: {error_message(exc)}")
        return False, None
