"""Multi-GPU runs behave like single-GPU ones: with `ngpu: 2` (two gloo ranks on the CPU),
rank 0 reports epoch metrics through the run's callback, and a cancel stops every rank at
the next step (rank 0 asks the callback and broadcasts the answer)."""

from __future__ import annotations

import time

import pytest

from ponas.search import Cancelled, SearchCallback, run_stage1
from tests.web.test_api_workers import (  # noqa: F401 (workers is a fixture)
    TINY,
    token_client,
    workers,
)
from webapp.runs.models import SearchRun


class StopAfterFirstEpoch(SearchCallback):
    def __init__(self) -> None:
        self.epochs: list[int] = []
        self.steps = 0

    def step(self, stage, step, total_steps, metrics) -> None:
        self.steps += 1

    def epoch_end(self, epoch, epochs, metrics) -> None:
        self.epochs.append(epoch)

    def should_stop(self) -> bool:
        return bool(self.epochs)


def test_rank_0_reports_through_the_callback_and_a_stop_reaches_every_rank(tmp_path):
    callback = StopAfterFirstEpoch()
    config = {**TINY, "epochs": 50, "ngpu": 2, "device": "cpu"}
    began = time.monotonic()
    with pytest.raises(Cancelled):
        run_stage1("digits", config, tmp_path, callback)
    assert callback.epochs == [1]  # one report per epoch, from rank 0 only
    assert callback.steps > 0
    assert time.monotonic() - began < 60  # not 50 epochs: both ranks stopped


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_two_rank_run_records_epochs_and_is_cancelled_within_10_seconds(
    django_user_model,
    workers,  # noqa: F811
):
    pool = workers(1)
    api = token_client(django_user_model)
    config = {**TINY, "epochs": 200, "ngpu": 2, "device": "cpu"}
    response = api.post("/api/runs/", {"preset": "digits", "config": config}, format="json")
    assert response.status_code == 201, response.json()
    url = f"/api/runs/{response.json()['id']}/"
    deadline = time.monotonic() + 120

    def epochs(body: dict) -> list[int]:
        return [m["step"] for m in body["metrics"] if m["kind"] == "epoch"]

    while not epochs(body := api.get(url).json()):
        assert time.monotonic() < deadline, pool.output()
        pool.check_alive()
        time.sleep(0.2)
    assert body["status"] == "running" and body["stage"] == "stage1"
    asked = time.monotonic()
    assert api.post(f"{url}cancel/").status_code == 202
    while (body := api.get(url).json())["status"] == "running":
        assert time.monotonic() - asked < 10, f"not cancelled after 10 s:\n{pool.output()}"
        time.sleep(0.1)
    assert body["status"] == "cancelled", body
    done = epochs(body)
    assert done == list(range(1, len(done) + 1)) and len(done) < 200
    assert SearchRun.objects.get(pk=body["id"]).out_dir.joinpath("checkpoints/stage1.pt").exists()
    pool.check_alive()  # the worker itself is fine (no rank left behind)
