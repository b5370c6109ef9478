"""The deployment build: the chosen network with inherited weights, optionally fine-tuned,
evaluated and exported (bundle, TorchScript, ONNX, model card) into the artifact store."""

from __future__ import annotations

import math
from typing import Any

from celery import shared_task
from celery.exceptions import Reject
from django.db import transaction
from django.utils import timezone

from ponas.deploy import specialize
from ponas.export import export_all
from ponas.search import Cancelled, SearchCallback
from tasks.progress import StopOnShutdown, error_message, heartbeat, leased, log
from tasks.tracking import deployment_tracking
from webapp.runs.datasets import search_settings
from webapp.runs.models import ACTIVE, Artifact, Deployment, Status


def _plain(metrics: dict[str, Any]) -> dict[str, Any]:
    """JSON-safe metrics (numbers as floats, NaN/inf dropped)."""
    out = {}
    for key, value in (metrics or {}).items():
        if isinstance(value, bool | int | float) and not (
            isinstance(value, float) and not math.isfinite(value)
        ):
            out[str(key)] = value
        elif isinstance(value, str):
            out[str(key)] = value
    return out


@shared_task(bind=True, name="tasks.deploy.build_deployment")
def build_deployment(self, deployment_id: int) -> None:
    """Build and export one deployment; idempotent (a finished one is left alone), and under
    its lease (a second copy or a redelivery while it builds does nothing)."""
    deployment = Deployment.objects.select_related("run").filter(pk=deployment_id).first()
    if deployment is None or deployment.status not in (Status.QUEUED, Status.RUNNING):
        return
    key = f"deployment {deployment_id}"
    with leased(self, key, "the build", deployment=deployment) as holding:
        if holding is not None:
            _build_held(self, deployment, holding)


def _build_held(task, deployment: Deployment, holding) -> None:
    deployment_id = deployment.pk
    if not Deployment.objects.filter(pk=deployment_id, status__in=ACTIVE).update(
        status=Status.RUNNING, started=timezone.now(), worker=task.request.hostname or ""
    ):
        return  # finished or failed meanwhile (e.g. a crash loop)
    try:
        with (
            heartbeat(Deployment.objects.filter(pk=deployment_id), holding),
            deployment_tracking(deployment, StopOnShutdown(holding)) as callback,
        ):
            files, metrics = _build(deployment, callback)
    except Cancelled:
        if holding.lost:
            log.warning("deployment %s lost its lease to another worker; stopped", deployment_id)
            return
        raise Reject("worker shutting down", requeue=True) from None
    except Exception as exc:
        log.exception("deployment %s failed", deployment_id)
        Deployment.objects.filter(pk=deployment_id, status=Status.RUNNING).update(
            status=Status.FAILED,
            error=f"building the network failed: {error_message(exc)}",
            finished=timezone.now(),
        )
        return
    with transaction.atomic():
        for kind, path in files.items():  # the formats asked for, and model_card
            Artifact.record(path, kind, deployment=deployment)
        metrics = _plain(metrics)
        Deployment.objects.filter(pk=deployment_id).update(
            status=Status.SUCCEEDED,
            metrics=metrics,
            measured_accuracy=metrics.get("top1", metrics.get("accuracy")),
            finished=timezone.now(),
        )


def _build(
    deployment: Deployment, callback: SearchCallback
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The network with inherited weights (fine-tuned if asked), evaluated and exported."""
    run = deployment.run
    supernet = run.artifacts.get(kind=Artifact.Kind.SUPERNET)
    model, metrics = specialize(
        supernet.file.path,
        deployment.choices,
        # the run's dataset (its kind and folder), input size, batch size, seed ...
        overrides=search_settings(run.preset, run.config),
        finetune_epochs=deployment.finetune_epochs,
        callback=callback,
    )
    callback.done(None)  # its trackers write out the accuracy they were given
    files = export_all(
        model,
        deployment.out_dir,
        formats=tuple(deployment.formats),
        metrics=metrics,
        cost=deployment.cost,
        predicted_score=deployment.predicted_score,
        budgets=deployment.budgets,
    )
    return files, metrics
