"""Experiment tracking: `ponas search --tensorboard DIR` writes event files TensorBoard reads
(stage-1 loss, accuracy, learning rate, images/s; each table row; a deployment's accuracy),
and with MLFLOW_TRACKING_URI set the same goes to an MLflow run with the search's settings
and its table."""

from __future__ import annotations

import logging
import sys

import pytest
import yaml

from ponas import tracking
from ponas.cli import main
from ponas.export import read_bundle
from ponas.search import CallbackGroup, SearchCallback
from ponas.space import SearchSpace, load_space
from ponas.table import AccuracyTable
from tests.conftest import TINY


def two_layer_space() -> SearchSpace:
    """The digits space cut to two layers of two candidates: a search of a few seconds."""
    spec = load_space("digits").to_dict()
    spec["name"] = "two-layer"
    spec["stages"] = [[8, 1, 1], [8, 1, 1]]
    spec["candidates"] = {"expansions": [3], "kernels": [3, 5], "se": [False], "skip": False}
    spec["head"] = {"channels": 16, "dropout": 0.0}
    return SearchSpace.from_dict(spec)


def scalars(folder) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in the event files under ``folder``, read by TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    return {
        tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]
    }


@pytest.fixture(scope="module")
def tracked_search(tmp_path_factory):
    """`ponas search --tensorboard` of the two-layer space with MLflow logging to a file store,
    then `ponas deploy --export --tensorboard` of its best network."""
    root = tmp_path_factory.mktemp("tracked")
    preset = root / "two-layer.yml"
    preset.write_text(yaml.safe_dump(two_layer_space().to_dict()))
    out, store = root / "search", root / "mlruns"
    settings = [f"--set={k}={v}" for k, v in {**TINY, "input_size": 8}.items() if k != "epochs"]
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MLFLOW_TRACKING_URI", store.as_uri())
        env.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 asks for it with a file store
        env.setenv("MLFLOW_EXPERIMENT_NAME", "tracking-test")
        args = ["search", "--preset", str(preset), "--epochs", "2", "--out", str(out)]
        assert main([*args, *settings, "--tensorboard", str(root / "tb")]) == 0
        deploy = ["deploy", "--table", str(out / "table.json"), "--supernet"]
        deploy += [str(out / "supernet.pt"), "--export", str(root / "net"), "--formats", "pt"]
        assert main([*deploy, "--tensorboard", str(root / "tb-deploy")]) == 0
    return root


@pytest.mark.slow
def test_search_writes_tensorboard_events_with_loss_accuracy_lr_and_table_rows(tracked_search):
    found = scalars(tracked_search / "tb")
    for tag in ["stage1/loss", "stage1/lr"]:
        assert found[tag] and all(step >= 1 for step, _ in found[tag]), tag
    for tag in ["epoch/train_loss", "epoch/train_acc", "epoch/lr", "epoch/images_per_s"]:
        assert [step for step, _ in found[tag]] == [1, 2], tag
    assert all(0.0 <= acc <= 1.0 for _, acc in found["epoch/train_acc"])
    assert all(rate > 0 for _, rate in found["epoch/images_per_s"])
    table = AccuracyTable.load(tracked_search / "search" / "table.json")
    for layer, row in enumerate(table.accuracy):
        for candidate, accuracy in zip(table.candidates, row, strict=True):
            logged = found[f"table/layer_{layer}/{candidate}"]
            assert logged == [(layer, pytest.approx(accuracy, abs=1e-6))]
    chosen = [table.accuracy[i][table.candidates.index(c)] for i, c in enumerate(table.path)]
    assert [v for _, v in found["table/chosen_accuracy"]] == pytest.approx(chosen, abs=1e-6)


@pytest.mark.slow
def test_deploy_with_tensorboard_logs_the_built_networks_accuracy(tracked_search):
    bundle = read_bundle(tracked_search / "net" / "model.pt")
    found = scalars(tracked_search / "tb-deploy")
    assert found["deploy/top1"] == [(0, pytest.approx(bundle["metrics"]["top1"], abs=1e-6))]
    assert "deploy/top5" in found


@pytest.mark.slow
def test_mlflow_run_holds_the_search_settings_metrics_and_table(tracked_search):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=(tracked_search / "mlruns").as_uri())
    experiment = client.get_experiment_by_name("tracking-test")
    search, deploy = sorted(
        client.search_runs([experiment.experiment_id]), key=lambda r: r.info.start_time
    )
    assert search.info.status == "FINISHED" and search.info.run_name == "search two-layer"
    params = search.data.params
    assert params["preset"] == "two-layer"
    assert params["epochs"] == "2" and params["finetune_steps"] == "2"
    assert params["input_size"] == "8" and params["dataset"] == "digits"
    history = client.get_metric_history(search.info.run_id, "epoch/train_loss")
    assert [m.step for m in history] == [1, 2]
    table = AccuracyTable.load(tracked_search / "search" / "table.json")
    assert search.data.metrics["table/layer_1/e3_k5"] == pytest.approx(table.accuracy[1][1])
    assert [a.path for a in client.list_artifacts(search.info.run_id)] == ["table.json"]
    stored = client.download_artifacts(search.info.run_id, "table.json", str(tracked_search))
    assert AccuracyTable.load(stored).to_dict() == table.to_dict()
    # the deployment: a run of its own with its budget-free choices and its accuracy
    assert deploy.info.status == "FINISHED"
    assert deploy.data.params["choices"] == " ".join(table.path)
    assert 0.0 <= deploy.data.metrics["deploy/top1"] <= 1.0


def test_mlflow_uri_without_mlflow_installed_warns_once_and_the_search_runs_untracked(
    monkeypatch, caplog, tmp_path
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.setitem(sys.modules, "mlflow", None)  # what an environment without it gives
    monkeypatch.setattr(tracking, "_warned_missing_mlflow", False)
    with caplog.at_level(logging.WARNING, logger="ponas.tracking"):
        for _ in range(2):
            assert tracking.search_trackers("digits", TINY, tmp_path) == []
    assert caplog.messages == [
        "MLFLOW_TRACKING_URI is set but MLflow is not installed (pip install mlflow-skinny); "
        "this run is not logged to MLflow"
    ]


def test_a_tracker_that_fails_warns_once_and_never_stops_the_search(monkeypatch, caplog, tmp_path):
    # MLflow 3 refuses a file store unless MLFLOW_ALLOW_FILE_STORE is set: a real failure
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    (mlflow,) = tracking.search_trackers("digits", TINY, tmp_path)
    group = CallbackGroup(SearchCallback(), mlflow)
    with caplog.at_level(logging.WARNING, logger="ponas.tracking"):
        group.stage_started("stage1", 10)
        group.epoch_end(1, 2, {"train_loss": 1.0})
        assert not group.should_stop()
    assert len(caplog.messages) == 1
    assert caplog.messages[0].startswith("MLflow logging is off for the rest of this run: ")
    assert "MLFLOW_ALLOW_FILE_STORE" in caplog.messages[0]


def test_tensorboard_on_deploy_without_export_says_what_it_needs(tmp_path, capsys):
    table = tmp_path / "table.json"
    table.write_text("{}")
    assert main(["deploy", "--table", str(table), "--tensorboard", str(tmp_path / "tb")]) == 2
    assert capsys.readouterr().err.strip() == (
        "ponas: error: --tensorboard needs --export DIR: only a built network has an accuracy "
        "to log"
    )


def test_callback_group_forwards_every_event_and_stops_when_any_member_asks():
    class Stopper(SearchCallback):
        def __init__(self, stop):
            self.stop, self.events, self.polled = stop, [], 0

        def row_done(self, layer, row, chosen):
            self.events.append((layer, chosen))

        def should_stop(self):
            self.polled += 1
            return self.stop

    calm, stopping = Stopper(False), Stopper(True)
    group = CallbackGroup(calm, stopping)
    group.row_done(0, [0.5], "e3_k3")
    assert calm.events == stopping.events == [(0, "e3_k3")]
    assert group.should_stop() and calm.polled == stopping.polled == 1
