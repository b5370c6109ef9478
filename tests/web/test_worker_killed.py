"""A worker SIGKILLed mid-run, in stage 1 and again in stage 2: a new worker picks the run up
on its own (its watchdog re-queues the run once the heartbeats stop) and continues from the
last checkpoint; once the automatic resumes are used up the run is marked failed with the
reason, and a manual resume finishes it. The table equals an uninterrupted search's with the
same seed; no duplicate rows, no lost metrics. A deployment build whose worker is killed is
built by the next worker."""

from __future__ import annotations

import os
import shutil
import signal
import time

import pytest

from ponas.table import AccuracyTable
from tests.web.helpers import make_finished_run
from tests.web.test_api_workers import (  # noqa: F401 (workers is a fixture)
    TINY,
    token_client,
    wait_for,
    workers,
)
from tests.web.workers import sequential_table
from webapp.runs.models import Artifact, Deployment, MetricPoint, SearchRun, TableEntry

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

EPOCHS = 6


def kill(pool) -> None:
    for proc in pool.procs:
        os.killpg(proc.pid, signal.SIGKILL)  # no warm shutdown: the worker just vanishes
        proc.wait()


def wait_until(pool, run_id, done, timeout=120) -> SearchRun:
    """Poll the database until ``done(run)``: the workers reap, this only watches."""
    deadline = time.monotonic() + timeout
    while not done(run := SearchRun.objects.get(pk=run_id)):
        assert time.monotonic() < deadline, (
            f"run {run_id}: {run.status} {run.stage} layer {run.current_layer} "
            f"attempt {run.attempt}\n{pool.output()}"
        )
        pool.check_alive()
        time.sleep(0.1)
    return run


def fast_watchdog(monkeypatch, settings, auto_resumes: int) -> None:
    # (the workers read these from the environment, the test's own API from settings)
    for name, value in {
        "PONAS_HEARTBEAT_TIMEOUT": "3",
        "PONAS_HEARTBEAT_SECONDS": "0.5",
        "PONAS_WATCHDOG_SECONDS": "0.5",
        "PONAS_AUTO_RESUMES": str(auto_resumes),
    }.items():
        monkeypatch.setenv(name, value)
    settings.PONAS_HEARTBEAT_TIMEOUT = 3
    settings.PONAS_AUTO_RESUMES = auto_resumes


def test_a_killed_workers_run_is_picked_up_by_a_new_worker_and_ends_with_the_same_table(
    django_user_model,
    workers,  # noqa: F811
    settings,
    monkeypatch,
    tmp_path,
):
    fast_watchdog(monkeypatch, settings, auto_resumes=1)
    config = {**TINY, "epochs": EPOCHS}
    api = token_client(django_user_model)
    run_id = api.post("/api/runs/", {"preset": "digits", "config": config}, format="json").json()[
        "id"
    ]
    url = f"/api/runs/{run_id}/"
    checkpoint = SearchRun.objects.get(pk=run_id).out_dir / "checkpoints" / "stage1.pt"

    # stage 1: killed once its first epoch is saved
    pool = workers(1)
    wait_until(pool, run_id, lambda r: checkpoint.exists())
    kill(pool)
    run = SearchRun.objects.get(pk=run_id)
    assert (run.status, run.stage, run.attempt) == ("running", "stage1", 1)

    # a new worker, and nothing else: it finds the lost run and carries on into stage 2
    pool = workers(1)
    run = wait_until(pool, run_id, lambda r: r.current_layer >= 2)
    assert (run.status, run.attempt, run.auto_resumes) == ("running", 2, 1), run
    kill(pool)

    # killed again, with no automatic resume left: the next worker's watchdog marks it
    # failed with the reason (reads change nothing: someone must look)
    pool = workers(1)
    body = api.get(url).json()
    # Tasks still queued for the run are done first (they hold live leases), then the lease
    # of the work the killed worker held expires and the watchdog fails the run.
    deadline = time.monotonic() + 120
    while body["status"] == "running":
        if time.monotonic() > deadline and body.get("waiting") and os.environ.get("REDIS_URL"):
            # With Redis, a task the killed worker had taken but not finished is redelivered
            # after the broker's visibility timeout: the run is rightly "waiting", not lost,
            # and the watchdog does not fail it. Which one happens depends on when the kill
            # lands; the failure path below is then not exercised in this run.
            pytest.skip("the killed worker's task awaits redelivery (Redis): the run waits")
        assert time.monotonic() < deadline, f"{body}\n{pool.output()}"
        time.sleep(0.2)
        body = api.get(url).json()
    if body["status"] == "succeeded":
        # The kill landed between two tasks (the killed worker held no work of the run, or its
        # task was redelivered and taken over): nothing was lost and the run rightly finished;
        # the failure path below is not exercised this time.
        pytest.skip("the second kill lost no work: the run succeeded without a resume")
    assert body["status"] == "failed" and body["stage"] == "stage2", body
    assert body["error"].startswith("the worker stopped sending heartbeats at ")
    assert "re-queued automatically once before" in body["error"]

    assert api.post(f"{url}resume/").status_code == 202
    body = wait_for(api, url, pool)
    assert body["status"] == "succeeded", f"{body}\n{pool.output()}"
    assert body["auto_resumes"] == 0  # a manual resume starts the count again
    assert TableEntry.objects.filter(run_id=run_id).count() == 39  # none twice
    epochs = MetricPoint.objects.filter(run_id=run_id, kind=MetricPoint.Kind.EPOCH)
    assert sorted(epochs.values_list("step", flat=True)) == list(range(1, EPOCHS + 1))

    expected = sequential_table("digits", config, tmp_path / "sequential")
    served = AccuracyTable.from_dict(api.get(f"{url}table/").json())
    assert served.accuracy == expected.accuracy
    assert served.path == expected.path


def test_a_deployment_build_whose_worker_is_killed_is_built_by_the_next_worker(
    django_user_model,
    workers,  # noqa: F811
    settings,
    monkeypatch,
    tiny_search,
):
    fast_watchdog(monkeypatch, settings, auto_resumes=1)
    api = token_client(django_user_model)
    run = make_finished_run(django_user_model.objects.get(username="ada"))
    run.config = TINY
    run.save(update_fields=["config"])
    run.out_dir.mkdir(parents=True)
    shutil.copy(tiny_search[0] / "supernet.pt", run.out_dir / "supernet.pt")
    Artifact.record(run.out_dir / "supernet.pt", Artifact.Kind.SUPERNET, run=run)
    response = api.post(
        "/api/deployments/",
        {"run": run.pk, "max_macs": 2e6, "finetune_epochs": 20, "formats": ["pt"]},
        format="json",
    )
    assert response.status_code == 201, response.json()
    build_id = response.json()["id"]

    pool = workers(1)
    deadline = time.monotonic() + 60
    while Deployment.objects.get(pk=build_id).status != "running":  # (fine-tuning: seconds)
        assert time.monotonic() < deadline, pool.output()
        time.sleep(0.05)
    kill(pool)
    assert Deployment.objects.get(pk=build_id).status == "running"

    pool = workers(1)  # nothing else: its watchdog finds the lost build
    deadline = time.monotonic() + 60
    while Deployment.objects.get(pk=build_id).auto_resumes == 0:  # (the database, not the API)
        assert time.monotonic() < deadline, pool.output()
        pool.check_alive()
        time.sleep(0.1)
    body = wait_for(api, f"/api/deployments/{build_id}/", pool)
    assert body["status"] == "succeeded", f"{body}\n{pool.output()}"
    assert body["auto_resumes"] == 1
    assert 0.0 <= body["measured_accuracy"] <= 1.0
    assert set(Artifact.objects.filter(deployment_id=build_id).values_list("kind", flat=True)) == {
        "pt",
        "model_card",
    }
