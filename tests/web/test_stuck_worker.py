"""Leftovers, through real Celery workers: a candidate task that fails ends the run's MLflow run
FAILED (not RUNNING for good); the embedded broker's delivered messages do not pile up in its
processed/ folder; a device profile holds a lease while it is timed, and a cancelled one
stops its worker and stores nothing."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from tasks.tracking import run_tracking
from tests.web.helpers import client_for, make_finished_run, make_run
from tests.web.test_api_workers import TINY, workers  # noqa: F401 (workers is a fixture)
from webapp.celery import app
from webapp.runs.models import DeviceProfile, Lease, SearchRun, Stage, Status

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def until(done, pool, timeout: float = 120, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"{what}\n{pool.output()}"
        pool.check_alive()
        time.sleep(0.2)


def test_a_failed_candidate_task_ends_the_runs_mlflow_run_failed(
    alice,
    workers,  # noqa: F811
    monkeypatch,
    tmp_path,
):
    from mlflow.tracking import MlflowClient

    store = tmp_path / "mlruns"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.as_uri())  # (the workers inherit these)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "stuck-test")
    run = make_run(alice, Status.RUNNING, stage=Stage.STAGE2, config=TINY, queue="gpu")
    run.out_dir.mkdir(parents=True)
    with run_tracking(run) as tracking:  # stage 1 logged into it: the MLflow run is RUNNING
        tracking.stage_started("stage1", 10)
    client = MlflowClient()
    (mlflow_run,) = client.search_runs([client.get_experiment_by_name("stuck-test").experiment_id])
    assert mlflow_run.info.status == "RUNNING"
    checkpoints = run.out_dir / "checkpoints"
    checkpoints.mkdir()
    (checkpoints / "stage1.pt").write_bytes(b"not a checkpoint")  # the candidate will fail

    pool = workers(1)
    app.send_task("tasks.search.evaluate_candidate", (run.pk, 1, 0, "e3_k3"), queue="gpu")
    until(lambda: SearchRun.objects.get(pk=run.pk).status == Status.FAILED, pool)
    assert SearchRun.objects.get(pk=run.pk).error.startswith("layer 0, candidate e3_k3 failed")
    until(
        lambda: client.get_run(mlflow_run.info.run_id).info.status == "FAILED",
        pool,
        timeout=30,
        what="the MLflow run is still RUNNING",
    )


def test_the_embedded_brokers_delivered_messages_are_removed(
    workers,  # noqa: F811
    monkeypatch,
):
    if not django_settings.CELERY_BROKER_URL.startswith("filesystem:"):
        pytest.skip("the embedded broker's folder (Redis keeps no delivered messages)")
    monkeypatch.setenv("PONAS_BROKER_KEEP_SECONDS", "2")
    monkeypatch.setenv("PONAS_WATCHDOG_SECONDS", "0.5")
    processed = Path(django_settings.CELERY_BROKER_TRANSPORT_OPTIONS["processed_folder"])
    pool = workers(1)
    for _ in range(5):
        app.send_task("tasks.watchdog.reap_stuck_work", (), queue="default")
    delivered = lambda: set(processed.glob("*.msg"))  # noqa: E731
    until(lambda: len(delivered()) >= 5, pool, what="the messages were not delivered")
    first = delivered()
    until(lambda: not (first & delivered()), pool, timeout=60, what="processed/ keeps them")


def test_a_profile_holds_a_lease_and_a_cancelled_one_stops_its_worker(
    alice,
    workers,  # noqa: F811
    monkeypatch,
):
    monkeypatch.setenv("PONAS_PROFILE_REPEATS", "100000")  # timing that would last for hours
    run = make_finished_run(alice)
    api = client_for(alice)
    response = api.post(f"/api/runs/{run.pk}/profiles/", {"queue": "gpu"}, format="json")
    profile_id = response.json()["id"]
    pool = workers(1)
    lease = Lease.objects.filter(key=f"profile {profile_id}", task_id__gt="")
    until(lambda: lease.exists(), pool, what="the profile took no lease")
    assert DeviceProfile.objects.get(pk=profile_id).status == Status.RUNNING
    assert lease.get().worker == "w1@test"
    response = api.post(f"/api/runs/{run.pk}/profiles/{profile_id}/cancel/")
    assert response.status_code == 202 and response.json()["status"] == "cancelled"
    # the worker stops at its next timed pass and releases the lease; nothing is stored
    until(lambda: not lease.exists(), pool, timeout=60, what="the worker still times")
    time.sleep(1)
    profile = DeviceProfile.objects.get(pk=profile_id)
    assert (profile.status, profile.lut) == (Status.CANCELLED, None)


def test_a_run_cancelled_and_resumed_during_stage_2_finishes_its_table(
    django_user_model,
    workers,  # noqa: F811
):
    # candidates spend most of their time evaluating (many suffixes, one fine-tune step): the
    # cancel lands while some candidate of attempt 1 evaluates; the resume's tasks must not
    # be dropped for it, and every layer must close
    from tests.web.test_api_workers import token_client, wait_for

    api = token_client(django_user_model)
    config = {**TINY, "finetune_steps": 1, "suffix_samples": 6, "eval_batches": 10}
    run_id = api.post("/api/runs/", {"preset": "digits", "config": config}, format="json")
    run_id = run_id.json()["id"]
    url = f"/api/runs/{run_id}/"
    pool = workers(2)
    candidates = Lease.objects.filter(run_id=run_id, key__contains="layer", task_id__gt="")
    until(lambda: candidates.filter(attempt=1).exists(), pool, timeout=240)
    assert api.post(f"{url}cancel/").status_code == 202
    until(lambda: SearchRun.objects.get(pk=run_id).status == Status.CANCELLED, pool)
    assert api.post(f"{url}resume/").status_code == 202
    body = wait_for(api, url, pool, timeout=600)
    assert body["status"] == "succeeded", f"{body}\n{pool.output()}"
    assert body["auto_resumes"] == 0
    run = SearchRun.objects.get(pk=run_id)
    assert run.attempt == 2 and len(run.path) == run.closed_layers == 6  # (digits: 6 layers)
    assert run.entries.count() == 39  # every candidate of every layer, none twice
