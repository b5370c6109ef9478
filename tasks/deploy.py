"""The deployment build: the chosen network with inherited weights, optionally fine-tuned,
evaluated and exported (bundle, TorchScript, ONNX, model card) into the artifact store."""

from __future__ import annotations

import math
from typing import Any

from celery import shared_task
from django.db import transaction

from ponas.deploy import specialize
from ponas.export import export_all
from ponas.search import SearchCallback
from tasks.progress import StopOnShutdown, guarded_job, job_task
from tasks.tracking import deployment_tracking
from webapp.runs.datasets import search_settings
from webapp.runs.models import Artifact, Deployment, Status


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
    key = f"deployment {deployment_id}"
    job_task(self, Deployment, deployment_id, key, "the build", _build_held)


def _build_held(task, deployment: Deployment, holding) -> None:
    deployment_id = deployment.pk
    deployments = Deployment.objects.filter(pk=deployment_id)
    if not deployments.claim(task.request.hostname or ""):
        return  # finished or failed meanwhile (e.g. a crash loop)

    def build() -> tuple[dict[str, Any], dict[str, Any]]:
        with deployment_tracking(deployment, StopOnShutdown(holding)) as callback:
            return _build(deployment, callback)

    ok, built = guarded_job(deployments, "building the network", build, holding)
    if not ok:
        return
    files, metrics = built
    with transaction.atomic():
        for kind, path in files.items():  # the formats asked for, and model_card
            Artifact.record(path, kind, deployment=deployment)
        metrics = _plain(metrics)
        deployments.finish(  # whatever its status now: the finished build wins
            Status.SUCCEEDED,
            of=None,
            metrics=metrics,
            measured_accuracy=metrics.get("top1", metrics.get("accuracy")),
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
