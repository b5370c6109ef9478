"""Cancel through a real worker: a run cancelled during stage 1 stops within 10 seconds at a
step boundary, keeps its checkpoint, and resume finishes it without replaying epochs."""

from __future__ import annotations

import time

import pytest

from tests.web.test_api_workers import (  # noqa: F401 (workers is a fixture)
    TINY,
    token_client,
    wait_for,
    workers,
)
from webapp.runs.models import MetricPoint, SearchRun, TableEntry

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

EPOCHS = 12  # long enough a stage 1 to cancel in the middle of it


def test_a_run_cancelled_in_stage_1_stops_within_10_seconds_and_resumes(
    django_user_model,
    workers,  # noqa: F811
):
    pool = workers(1)
    api = token_client(django_user_model)
    config = {**TINY, "epochs": EPOCHS}
    run_id = api.post("/api/runs/", {"preset": "digits", "config": config}, format="json").json()[
        "id"
    ]
    url = f"/api/runs/{run_id}/"
    run = SearchRun.objects.get(pk=run_id)
    checkpoint = run.out_dir / "checkpoints" / "stage1.pt"
    deadline = time.monotonic() + 120
    while not checkpoint.exists():  # the first epoch is done and saved
        assert time.monotonic() < deadline, pool.output()
        pool.check_alive()
        time.sleep(0.1)
    body = api.get(url).json()
    assert (body["status"], body["stage"]) == ("running", "stage1"), body

    asked = time.monotonic()
    assert api.post(f"{url}cancel/").status_code == 202
    while (body := api.get(url).json())["status"] == "running":
        assert time.monotonic() - asked < 10, f"not cancelled after 10 s:\n{pool.output()}"
        time.sleep(0.1)
    took = time.monotonic() - asked
    assert body["status"] == "cancelled", body
    assert body["stage"] == "stage1"
    assert took < 10
    assert checkpoint.exists()
    epochs_done = [m["step"] for m in body["metrics"] if m["kind"] == "epoch"]
    assert 1 <= len(epochs_done) < EPOCHS, "cancel came too late to test stage 1"
    assert not TableEntry.objects.filter(run_id=run_id).exists()
    epochs = MetricPoint.objects.filter(run_id=run_id, kind=MetricPoint.Kind.EPOCH)
    saved = dict(epochs.values_list("step", "time"))

    assert api.post(f"{url}resume/").status_code == 202
    body = wait_for(api, url, pool)
    assert body["status"] == "succeeded", f"{body}\n{pool.output()}"
    # stage 1 went on from its checkpoint: the epochs done before the cancel were not run
    # again (their points were not rewritten), and every epoch has one point
    assert {k: v for k, v in epochs.values_list("step", "time") if k in saved} == saved
    assert [m["step"] for m in body["metrics"] if m["kind"] == "epoch"] == list(
        range(1, EPOCHS + 1)
    )
    assert TableEntry.objects.filter(run_id=run_id).count() == 39
