"""Celery tasks of a table audit: glue between the queue, ``ponas.audit`` and the audit's rows.

Flow (no chords; the database coordinates, as a search's layers do)::

    services.start_audit -> one train_network per training (network, seed), on the run's queue
      -> each trains its network from scratch (ponas.audit.train_from_scratch) and stores the
         test accuracy on its AuditNetwork row
      -> the training that completes the set claims the finish (a conditional UPDATE exactly
         one wins) and sends finish_audit (queue default)
      -> finish_audit computes the report (ponas.audit.run_audit over the stored truths:
         the same pools, figures and sentences as ``ponas audit``), status succeeded.

Every task is idempotent and holds a lease (``tasks.progress.leased``): a second copy or a
redelivery finds it held and does nothing; a redelivery after its worker died takes it over;
a training already stored is not trained again. A training under way stops at its next step
when the audit is cancelled (or failed), when its lease was taken over, or when the worker
shuts down (then it goes back to the queue). While it trains, its heartbeat thread renews the
lease and the audit's heartbeat: the watchdog re-sends an audit whose worker vanished.
"""

from __future__ import annotations

import time
from typing import Any

from celery import shared_task
from celery.exceptions import Reject
from django.conf import settings
from django.db.models.functions import Greatest
from django.utils import timezone

from ponas.audit import Recipe, run_audit, train_from_scratch
from ponas.search import Cancelled
from tasks.progress import StopOnShutdown, error_message, heartbeat, job_task, leased, log
from webapp.runs.datasets import search_settings
from webapp.runs.models import ACTIVE, Audit, AuditNetwork, Status
from webapp.runs.tables import accuracy_table

# The data of the last run a training on this worker used: the next training of the same run
# (most of an audit's trainings, on a worker that takes several) does not load it again.
_data: dict[str, Any] = {}


class AuditStop(StopOnShutdown):
    """Stops a training at its next step when the audit is no longer active (cancelled, or
    failed by another training), besides a shutdown or a lost lease; polls the database at
    most every ``PONAS_POLL_SECONDS``."""

    def __init__(self, audit_id: int, holding) -> None:
        super().__init__(holding)
        self.audit_id, self.last_poll, self.stop = audit_id, 0.0, False

    def should_stop(self) -> bool:
        if super().should_stop():
            return True
        now = time.monotonic()
        if now - self.last_poll >= settings.PONAS_POLL_SECONDS:
            self.last_poll = now
            self.stop = not Audit.objects.filter(pk=self.audit_id, status__in=ACTIVE).exists()
        return self.stop


def _truth_data(audit: Audit, table):
    """The run's data splits (its training split trains, its test split scores) and the data
    set's kind."""
    from ponas.search import make_context

    run = audit.run
    key = f"{run.pk}/{run.finished}"
    if _data.get("key") != key:
        _data.clear()
        overrides = search_settings(run.preset, run.config)
        context = make_context(table.search_space(), overrides)
        _data.update(key=key, data=context.data, dataset=context.cfg.dataset)
    return _data["data"], _data["dataset"]


@shared_task(bind=True, name="tasks.audit.train_network")
def train_network(self, audit_id: int, network_id: int) -> None:
    """Train one network of an audit from scratch and store its test accuracy; the training
    that completes the audit's set sends the finishing task."""
    network = (
        AuditNetwork.objects.select_related("audit__run")
        .filter(pk=network_id, audit_id=audit_id)
        .first()
    )
    if network is None or network.audit.status not in ACTIVE:
        return
    audit = network.audit
    if network.accuracy is None:
        what = f"training {network.pk} of audit {audit_id}"
        key = f"audit {audit_id} network {network_id}"
        with leased(self, key, what, audit=audit) as holding:
            if holding is None:
                return
            if not _train_held(self, audit, network, holding):
                return
    _claim_finish(audit)


def _train_held(task, audit: Audit, network: AuditNetwork, holding) -> bool:
    """Train under the lease; True once the accuracy is stored."""
    worker = task.request.hostname or ""
    audits = Audit.objects.filter(pk=audit.pk)
    if not audits.claim(worker, keep_started=True):  # its first training's start
        return False  # cancelled or failed meanwhile
    network.refresh_from_db()
    if network.accuracy is not None:  # an earlier delivery stored it
        return True
    began = time.perf_counter()
    try:
        with heartbeat(audits, holding):
            table = accuracy_table(audit.run)
            data, dataset = _truth_data(audit, table)
            accuracy = train_from_scratch(
                table.search_space(),
                network.choices,
                data,
                dataset,  # its kind (a registered data set's name is not one)
                Recipe(epochs=audit.epochs),
                seed=network.seed,
                callback=AuditStop(audit.pk, holding),
            )
    except Cancelled:
        if holding.lost:
            log.warning("audit %s: training %s lost its lease; stopped", audit.pk, network.pk)
            return False
        if not audits.filter(status__in=ACTIVE).exists():
            log.info("audit %s stopped; training %s dropped", audit.pk, network.pk)
            return False
        raise Reject("worker shutting down", requeue=True) from None
    except Exception as exc:
        log.exception("audit %s: training %s failed", audit.pk, network.pk)
        audits.fail(f"training {' '.join(network.choices)} failed: {error_message(exc)}")
        return False
    AuditNetwork.objects.filter(pk=network.pk, accuracy__isnull=True).update(
        accuracy=accuracy,
        seconds=time.perf_counter() - began,
        worker=worker,
        finished=timezone.now(),
    )
    done = AuditNetwork.objects.filter(audit=audit, accuracy__isnull=False).count()
    # (two trainings ending at once: the later count wins, never a smaller one)
    audits.filter(status__in=ACTIVE).update(trained=Greatest("trained", done))
    log.info("audit %s: training %s done (%s of %s)", audit.pk, network.pk, done, audit.total)
    return True


def _claim_finish(audit: Audit) -> None:
    """If every training is stored, send the finishing task, once (a conditional UPDATE)."""
    if AuditNetwork.objects.filter(audit=audit, accuracy__isnull=True).exists():
        return
    if Audit.objects.filter(pk=audit.pk, status__in=ACTIVE, finishing=False).update(finishing=True):
        finish_audit.apply_async((audit.pk,), queue="default")


@shared_task(bind=True, name="tasks.audit.finish_audit")
def finish_audit(self, audit_id: int) -> None:
    """The report from the stored truths: per budget tau of the table and of MACs with their
    intervals, the deployed network's percentile, the seeds' agreement, the sentence."""
    key = f"audit {audit_id} finish"
    job_task(self, Audit, audit_id, key, "finishing the audit", _finish)


def _finish(task, audit: Audit, holding) -> None:
    truths = {
        (tuple(choices), seed): accuracy
        for choices, seed, accuracy in AuditNetwork.objects.filter(audit=audit).values_list(
            "choices", "seed", "accuracy"
        )
    }
    if any(a is None for a in truths.values()):
        return  # a re-sent finish before the trainings (they claim it again when done)
    audits = Audit.objects.filter(pk=audit.pk)
    audits.claim(task.request.hostname or "", keep_started=True)

    def stored(space, names, data, dataset, recipe, seed=0) -> float:
        return truths[(tuple(names), seed)]

    try:
        with heartbeat(audits, holding):
            report = run_audit(
                accuracy_table(audit.run),
                audit.budgets,
                audit.networks,
                Recipe(epochs=audit.epochs),
                seeds=audit.seeds,
                data=object(),  # every truth is stored: nothing is loaded or trained here
                train=stored,
            )
    except Exception as exc:
        log.exception("audit %s: the report failed", audit.pk)
        audits.fail(f"computing the report failed: {error_message(exc)}")
        return
    if audits.finish(Status.SUCCEEDED, results=report, trained=audit.total):
        log.info("audit %s succeeded", audit.pk)
