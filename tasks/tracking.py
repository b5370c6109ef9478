"""Experiment tracking of the tasks: every task of a run adds the run's trackers
(``ponas.tracking``) to its callbacks. TensorBoard event files always go to the run's folder
in the artifact store (``runs/<id>/tensorboard/``, a deployment's in a folder of its own);
MLflow too when the worker's environment sets ``MLFLOW_TRACKING_URI``. A tracker that cannot
be set up costs the run a warning in the worker's log, never the run itself."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from ponas.files import TENSORBOARD_DIR
from ponas.search import CallbackGroup, SearchCallback
from ponas.tracking import deploy_trackers, search_trackers
from webapp.runs.datasets import search_settings
from webapp.runs.models import Deployment, SearchRun

log = logging.getLogger("tasks")  # the tasks' log, as tasks.progress writes it


@contextmanager
def run_tracking(run: SearchRun, *callbacks: SearchCallback) -> Iterator[CallbackGroup]:
    """``callbacks`` and the run's trackers as one callback while the block runs; the
    trackers' files are written out after it."""
    try:
        trackers = search_trackers(
            run.preset,
            search_settings(run.preset, run.config),
            run.out_dir,
            tensorboard=run.out_dir / TENSORBOARD_DIR,
            run_name=run.name or f"run {run.pk}",
        )
    except Exception as exc:  # e.g. a dataset unregistered since: the task reports that
        log.warning("run %s: no tracking (%s)", run.pk, exc)
        trackers = []
    with _grouped(callbacks, trackers) as group:
        yield group


@contextmanager
def deployment_tracking(
    deployment: Deployment, *callbacks: SearchCallback
) -> Iterator[CallbackGroup]:
    """Like :func:`run_tracking` for a deployment's build: its fine-tune loss and test
    accuracy in ``tensorboard/deployment-<id>/`` of its run, and in its run's MLflow run."""
    run = deployment.run
    params = {"run": run.pk, "deployment": deployment.pk, "choices": " ".join(deployment.choices)}
    params.update(deployment.budgets)
    trackers = deploy_trackers(
        {**params, "finetune_epochs": deployment.finetune_epochs},
        tensorboard=run.out_dir / TENSORBOARD_DIR / f"deployment-{deployment.pk}",
        search_out=run.out_dir,
        prefix=f"deployment_{deployment.pk}/",
        run_name=f"deployment {deployment.pk}",
    )
    with _grouped(callbacks, trackers) as group:
        yield group


@contextmanager
def _grouped(callbacks, trackers) -> Iterator[CallbackGroup]:
    """The callbacks and the trackers as one callback; the trackers closed after (a failing
    close costs a warning)."""
    try:
        yield CallbackGroup(*callbacks, *trackers)
    finally:
        for tracker in trackers:
            tracker.guard(tracker.close)
