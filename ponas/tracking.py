"""Experiment tracking: a search's and a deployment's progress as TensorBoard event files and,
when ``MLFLOW_TRACKING_URI`` is set, as an MLflow run. Both are callbacks of the search's
progress protocol (:mod:`ponas.search.callbacks`); the ``ponas`` command and the workers add
them to their own callbacks with :class:`~ponas.search.callbacks.CallbackGroup`.

The names (TensorBoard tags, MLflow metric keys) are the same in both:

==============================================  ==========================================
``stage1/loss``, ``stage1/lr``                   every ``step_every``-th stage-1 step (x: step)
``finetune/loss``                                a deployment's fine-tune steps (x: step)
``epoch/train_loss``, ``epoch/train_acc``,       each stage-1 epoch (x: epoch); ``lr`` is the
``epoch/images_per_s``, ``epoch/lr``             rate of the epoch's last step
``table/layer_{l}/{candidate}``                  each entry of row ``l`` when the row closes (x: l)
``table/chosen_accuracy``                        the chosen candidate's entry (x: layer)
``deploy/top1``, ``deploy/top5``                 a deployed network's test accuracy
==============================================  ==========================================

A tracker never stops the work it watches: the first error it meets (a full disk, an MLflow
server that went away) is logged as one warning line and the tracker turns itself off.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ponas.files import MLFLOW_RUN_FILE, TABLE_FILE, atomic_write_text
from ponas.search.callbacks import SearchCallback

# Without logging configured (the `ponas` command), Python's last-resort handler prints a
# warning's bare message on stderr: one line, as a user should read it.
log = logging.getLogger("ponas.tracking")

_warned_missing_mlflow = False


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 600 else text[:597] + "..."


class ScalarTracker(SearchCallback):
    """Progress events as named scalars (the names in the module docstring); subclasses say
    where they go. ``candidates`` are the table's columns (the space's candidate names), so
    a closed row's entries can be named; ``prefix`` goes before every name."""

    what = "tracking"

    def __init__(self, candidates: Sequence[str], step_every: int = 10, prefix: str = "") -> None:
        self.candidates = list(candidates)
        self.step_every = max(1, int(step_every))
        self.prefix = prefix
        self.off = False
        self._lr: float | None = None

    # ---- where the scalars go (subclasses) ----

    def write_scalars(self, values: dict[str, float], step: int) -> None:
        raise NotImplementedError

    def write_text(self, name: str, text: str, step: int) -> None:
        """A short text (the chosen candidate of a layer); optional."""

    def end(self, status: str, table: Any = None) -> None:
        """The work ended (``FINISHED`` with its table, or ``FAILED``); optional."""

    def close(self) -> None:
        """Write out what is buffered and let go of open files; optional."""

    # ---- the protocol ----

    def guard(self, fn: Callable[..., None], *args: Any) -> None:
        """``fn(*args)``, unless this tracker is off; the first error turns it off."""
        if self.off:
            return
        try:
            fn(*args)
        except Exception as exc:
            self.off = True
            log.warning("%s is off for the rest of this run: %s", self.what, _one_line(exc))

    def scalars(self, values: dict[str, float], step: int) -> None:
        named = {self.prefix + k: float(v) for k, v in values.items()}
        self.guard(self.write_scalars, named, step)

    def step(self, stage: str, step: int, total_steps: int, metrics: dict[str, float]) -> None:
        if stage == "stage1" and "lr" in metrics:
            self._lr = metrics["lr"]
        if step % self.step_every == 0 or step == total_steps:
            self.scalars({f"{stage}/{k}": v for k, v in metrics.items()}, step)

    def epoch_end(self, epoch: int, epochs: int, metrics: dict[str, float]) -> None:
        values = {f"epoch/{k}": v for k, v in metrics.items() if k != "epoch"}
        if self._lr is not None:
            values["epoch/lr"] = self._lr
        self.scalars(values, epoch)

    def row_done(self, layer: int, row: list[float | None], chosen: str) -> None:
        values = {
            f"table/layer_{layer}/{c}": a
            for c, a in zip(self.candidates, row, strict=True)
            if a is not None
        }
        values["table/chosen_accuracy"] = row[self.candidates.index(chosen)]
        self.scalars(values, layer)
        self.guard(self.write_text, self.prefix + "table/chosen", f"layer {layer}: {chosen}", layer)

    def evaluated(self, metrics: dict[str, float]) -> None:
        self.scalars({f"deploy/{k}": v for k, v in metrics.items()}, 0)

    def done(self, table: Any) -> None:
        self.guard(self.end, "FINISHED", table)

    def failed(self, error: str) -> None:
        self.guard(self.end, "FAILED")


class TensorBoardCallback(ScalarTracker):
    """Writes TensorBoard event files into ``log_dir`` (``tensorboard --logdir`` reads them).

    The event file is opened at the first scalar, so work that reports nothing leaves no
    file; several processes (the tasks of one web run) each write their own file into the
    same folder, and TensorBoard reads them as one run.

    A resumed search starts again at its last checkpoint's step: the steps logged after that
    checkpoint, before the interruption, come again. The file of a tracker whose first
    stage-1 step is past the first starts with TensorBoard's purge marker at that step
    (``SummaryWriter(purge_step=...)``): TensorBoard hides the earlier files' events from
    that step on, so each step shows once."""

    what = "TensorBoard logging"

    def __init__(
        self,
        log_dir: str | Path,
        candidates: Sequence[str] = (),
        step_every: int = 10,
        prefix: str = "",
    ) -> None:
        super().__init__(candidates, step_every, prefix)
        self.log_dir = Path(log_dir)
        self.writer = None
        self.first_step: int | None = None  # the first stage-1 step this tracker saw

    def step(self, stage: str, step: int, total_steps: int, metrics: dict[str, float]) -> None:
        if stage == "stage1" and self.first_step is None and self.writer is None:
            self.first_step = step
        super().step(stage, step, total_steps, metrics)

    def _writer(self):
        if self.writer is None:
            # imported here: tensorboard and protobuf are heavy, and only a tracked run needs them
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(
                str(self.log_dir),
                flush_secs=10,
                purge_step=self.first_step if (self.first_step or 0) > 1 else None,
            )
        return self.writer

    def write_scalars(self, values: dict[str, float], step: int) -> None:
        writer = self._writer()
        for name, value in values.items():
            writer.add_scalar(name, value, step)

    def write_text(self, name: str, text: str, step: int) -> None:
        self._writer().add_text(name, text, step)

    def end(self, status: str, table: Any = None) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class MLflowCallback(ScalarTracker):
    """Logs to an MLflow run on the server (or store) ``MLFLOW_TRACKING_URI`` names, in the
    experiment ``MLFLOW_EXPERIMENT_NAME`` (default ``ponas``): ``params`` once, when the run
    is created; the scalars as metrics; at the end the table as the artifact ``table.json``.

    With ``out`` (a search's folder), the MLflow run's id is kept in ``out/mlflow-run.json``,
    so a resumed search, and every worker task of a web run, logs to the same MLflow run.
    ``end_run``: whether this tracker ends the MLflow run (a deployment logged into its
    search's run leaves it as it was)."""

    what = "MLflow logging"
    FLUSH_SECONDS = 30.0

    def __init__(
        self,
        candidates: Sequence[str],
        params: dict[str, Any],
        run_name: str,
        out: str | Path | None = None,
        step_every: int = 10,
        prefix: str = "",
        end_run: bool = True,
    ) -> None:
        super().__init__(candidates, step_every, prefix)
        self.params, self.run_name, self.end_run = params, run_name, end_run
        self.out = None if out is None else Path(out)
        self.client = None
        self.run_id: str | None = None
        self.pending: list[Any] = []
        self.flushed = time.monotonic()

    def _open(self):
        """The client and this tracker's MLflow run: the one ``out`` names, or a new one."""
        if self.client is not None:
            return self.client
        from mlflow.tracking import MlflowClient  # heavy; only a tracked run needs it

        client = MlflowClient()
        uri = client.tracking_uri
        saved = self._saved(uri)
        if saved is not None:
            self.run_id = saved
        else:
            experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME") or "ponas"
            self.run_id = client.create_run(
                _experiment_id(client, experiment), run_name=self.run_name
            ).info.run_id
            if self.out is not None:
                text = json.dumps({"tracking_uri": uri, "run_id": self.run_id})
                atomic_write_text(self.out / MLFLOW_RUN_FILE, text + "\n")
            self._log_params(client)
        self.client = client
        return client

    def _saved(self, uri: str) -> str | None:
        """The run id kept in ``out`` for this tracking URI (a run deleted there since
        makes the first write fail: one warning, and this tracker is off)."""
        if self.out is None or not (self.out / MLFLOW_RUN_FILE).exists():
            return None
        saved = json.loads((self.out / MLFLOW_RUN_FILE).read_text(encoding="utf-8"))
        return saved.get("run_id") if saved.get("tracking_uri") == uri else None

    def _log_params(self, client) -> None:
        from mlflow.entities import Param

        # MLflow keeps a parameter's value to 6000 characters and takes 100 per call
        params = [Param(str(k), str(v)[:6000]) for k, v in self.params.items()]
        for i in range(0, len(params), 100):
            client.log_batch(self.run_id, params=params[i : i + 100])

    def stage_started(self, stage: str, total_steps: int) -> None:
        # a resumed search (or its next worker task) shows as running again
        if self.end_run:
            self.guard(lambda: self._open().update_run(self.run_id, status="RUNNING"))

    def write_scalars(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.pending += [Metric(k, v, now, step) for k, v in values.items()]
        # steps come often: they are sent in batches; everything else at once
        if not any(k.startswith(self.prefix + "stage1/") for k in values) or (
            len(self.pending) >= 500 or time.monotonic() - self.flushed > self.FLUSH_SECONDS
        ):
            self._flush()

    def _flush(self) -> None:
        client = self._open()
        while self.pending:  # at most 1000 metrics per call
            batch, self.pending = self.pending[:1000], self.pending[1000:]
            client.log_batch(self.run_id, metrics=batch)
        self.flushed = time.monotonic()

    def write_text(self, name: str, text: str, step: int) -> None:
        self._open().set_tag(self.run_id, name.replace("/", ".") + f".{step}", text)

    def end(self, status: str, table: Any = None) -> None:
        client = self._open()
        self._flush()
        if table is not None:
            path = None if self.out is None else self.out / TABLE_FILE
            if path is not None and path.exists():
                client.log_artifact(self.run_id, str(path))
            else:
                client.log_dict(self.run_id, table.to_dict(), TABLE_FILE)
        if self.end_run:
            client.set_terminated(self.run_id, status)

    def close(self) -> None:
        if self.pending:
            self.guard(self._flush)


def _experiment_id(client, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(name)
    except Exception:  # created meanwhile by another worker
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def mlflow_wanted() -> bool:
    """Whether to log to MLflow: ``MLFLOW_TRACKING_URI`` is set and the package is installed
    (set without it: one warning line per process, and the work runs untracked)."""
    global _warned_missing_mlflow
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        return False
    try:
        installed = importlib.util.find_spec("mlflow") is not None
    except (ImportError, ValueError):  # a broken or blocked install
        installed = False
    if not installed:
        if not _warned_missing_mlflow:
            _warned_missing_mlflow = True
            log.warning(
                "MLFLOW_TRACKING_URI is set but MLflow is not installed (pip install "
                "mlflow-skinny); this run is not logged to MLflow"
            )
        return False
    return True


def search_trackers(
    space: Any,
    overrides: dict[str, Any] | None,
    out: str | Path | None,
    *,
    tensorboard: str | Path | None = None,
    run_name: str = "",
) -> list[ScalarTracker]:
    """The trackers of a search: TensorBoard event files in ``tensorboard`` (if given) and
    MLflow (if ``MLFLOW_TRACKING_URI`` is set), whose params are the resolved search
    settings and the preset's name. ``space`` and ``overrides`` as :func:`run_search` takes
    them."""
    from ponas.search.config import resolve

    resolved, cfg = resolve(space, overrides)
    trackers: list[ScalarTracker] = []
    if tensorboard is not None:
        trackers.append(TensorBoardCallback(tensorboard, resolved.candidates))
    if mlflow_wanted():
        params = {"preset": resolved.name, **cfg.to_dict()}
        name = run_name or f"search {resolved.name}"
        trackers.append(MLflowCallback(resolved.candidates, params, name, out=out))
    return trackers


def deploy_trackers(
    params: dict[str, Any],
    *,
    tensorboard: str | Path | None = None,
    search_out: str | Path | None = None,
    prefix: str = "",
    run_name: str = "deploy",
) -> list[ScalarTracker]:
    """The trackers of a deployment: its fine-tune loss and test accuracy as TensorBoard
    event files in ``tensorboard`` (if given) and in MLflow (if ``MLFLOW_TRACKING_URI`` is
    set): into the MLflow run of the search in ``search_out`` when it has one (the metrics
    named with ``prefix``), else into a new run with ``params``."""
    trackers: list[ScalarTracker] = []
    if tensorboard is not None:
        trackers.append(TensorBoardCallback(tensorboard))
    if mlflow_wanted():
        joined = search_out is not None and (Path(search_out) / MLFLOW_RUN_FILE).exists()
        trackers.append(
            MLflowCallback(
                (),
                params,
                run_name,
                out=search_out if joined else None,
                prefix=prefix if joined else "",
                end_run=not joined,
            )
        )
    return trackers
