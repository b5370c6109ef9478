"""A worker SIGKILLed mid-run (stage 1, then stage 2): the watchdog marks the run failed once
its heartbeats stop, resume on a new worker continues from the last checkpoint, and the table
is the one an uninterrupted search with the same seed gives; no duplicate rows."""

from __future__ import annotations

import os
import signal
import time

import pytest

from ponas.table import AccuracyTable
from tests.web.test_api_workers import (  # noqa: F401 (workers is a fixture)
    TINY,
    token_client,
    wait_for,
    workers,
)
from webapp.runs.models import MetricPoint, SearchRun, TableEntry

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

EPOCHS = 6


def kill(pool) -> None:
    for proc in pool.procs:
        os.killpg(proc.pid, signal.SIGKILL)  # no warm shutdown: the worker just vanishes
        proc.wait()


def wait_until(api, url, pool, done, timeout=120) -> dict:
    deadline = time.monotonic() + timeout
    while not done(body := api.get(url).json()):
        assert time.monotonic() < deadline, f"{body}\n{pool.output()}"
        time.sleep(0.1)
    return body


def test_a_killed_worker_leaves_a_failed_run_that_resumes_to_the_same_table(
    django_user_model,
    workers,  # noqa: F811
    settings,
    monkeypatch,
    tmp_path,
):
    from ponas.search import run_search

    settings.PONAS_HEARTBEAT_TIMEOUT = 3
    monkeypatch.setenv("PONAS_HEARTBEAT_SECONDS", "0.5")
    config = {**TINY, "epochs": EPOCHS}
    api = token_client(django_user_model)
    run_id = api.post("/api/runs/", {"preset": "digits", "config": config}, format="json").json()[
        "id"
    ]
    url = f"/api/runs/{run_id}/"
    run = SearchRun.objects.get(pk=run_id)

    # stage 1: killed once its first epoch is saved
    pool = workers(1)
    checkpoint = run.out_dir / "checkpoints" / "stage1.pt"
    wait_until(api, url, pool, lambda b: checkpoint.exists() or b["status"] != "queued")
    wait_until(api, url, pool, lambda b: checkpoint.exists())
    kill(pool)
    body = wait_until(api, url, pool, lambda b: b["status"] != "running", timeout=30)
    assert body["status"] == "failed" and body["stage"] == "stage1", body
    assert body["error"].startswith("the worker stopped sending heartbeats at ")

    # stage 2: a new worker resumes; killed once two layers are done
    pool = workers(1)  # (a new pool purges the queue: start it before resuming)
    assert api.post(f"{url}resume/").status_code == 202
    wait_until(api, url, pool, lambda b: b["current_layer"] >= 2)
    kill(pool)
    body = wait_until(api, url, pool, lambda b: b["status"] != "running", timeout=30)
    assert body["status"] == "failed" and body["stage"] == "stage2", body

    pool = workers(1)  # (a new pool purges the queue: start it before resuming)
    assert api.post(f"{url}resume/").status_code == 202
    body = wait_for(api, url, pool)
    assert body["status"] == "succeeded", f"{body}\n{pool.output()}"
    assert TableEntry.objects.filter(run_id=run_id).count() == 39  # none twice
    epochs = MetricPoint.objects.filter(run_id=run_id, kind=MetricPoint.Kind.EPOCH)
    assert sorted(epochs.values_list("step", flat=True)) == list(range(1, EPOCHS + 1))

    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the workers: float sums depend on it
    try:
        expected = run_search("digits", config, tmp_path / "sequential")
    finally:
        torch.set_num_threads(threads)
    served = AccuracyTable.from_dict(api.get(f"{url}table/").json())
    assert served.accuracy == expected.accuracy
    assert served.path == expected.path
