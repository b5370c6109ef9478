"""The service at fleet scale, through real workers: stage 1 runs as a chain of short tasks
(each continuing from the checkpoint) with exactly one trainer per epoch even when a copy of
the task is delivered again; runs waiting in a queue behind other work are never reaped;
with Redis and a visibility timeout of a few seconds, a stage 1 longer than it completes with
one trainer and the same table as an uninterrupted search."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time

import pytest
from django.conf import settings as django_settings

from ponas.table import AccuracyTable
from tests.web.test_api_workers import (  # noqa: F401 (workers is a fixture)
    TINY,
    token_client,
    wait_for,
    workers,
)
from tests.web.workers import sequential_table
from webapp.celery import app
from webapp.runs.models import SearchRun
from webapp.runs.services import RUN_SEARCH

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def trained_epochs(pool, run_id: int) -> list[int]:
    """The stage-1 epochs the workers' logs say they trained (each line once: the logs
    carry it in two formats)."""
    pattern = re.compile(rf"^\[.*run {run_id}: stage 1 epoch (\d+) of \d+ trained by", re.M)
    return sorted(int(m) for log in pool.logs for m in pattern.findall(log.read_text()))


def leases_taken(pool, key: str) -> int:
    pattern = re.compile(rf"^\[.*{key}: lease taken by", re.M)
    return sum(len(pattern.findall(log.read_text())) for log in pool.logs)


def test_stage_1_runs_as_short_tasks_and_a_second_copy_trains_nothing(
    django_user_model,
    workers,  # noqa: F811
    monkeypatch,
    tmp_path,
):
    monkeypatch.setenv("PONAS_STAGE1_TASK_SECONDS", "0.01")  # one epoch per task
    config = {**TINY, "epochs": 5}
    pool = workers(2)
    api = token_client(django_user_model)
    run_id = api.post("/api/runs/", {"preset": "digits", "config": config}, format="json").json()[
        "id"
    ]
    checkpoint = SearchRun.objects.get(pk=run_id).out_dir / "checkpoints" / "stage1.pt"
    deadline = time.monotonic() + 120
    while not checkpoint.exists():
        assert time.monotonic() < deadline, pool.output()
        pool.check_alive()
        time.sleep(0.05)
    # a second copy of the run's task (a redelivery, a duplicate message) mid stage 1
    app.send_task(RUN_SEARCH, (run_id, 1), queue="gpu")
    body = wait_for(api, f"/api/runs/{run_id}/", pool)
    assert body["status"] == "succeeded", f"{body}\n{pool.output()}"
    assert body["auto_resumes"] == 0
    assert trained_epochs(pool, run_id) == [1, 2, 3, 4, 5], pool.output()  # one trainer each
    assert [m["step"] for m in body["metrics"] if m["kind"] == "epoch"] == [1, 2, 3, 4, 5]
    assert leases_taken(pool, f"run {run_id} stage1") >= 5  # a chain of tasks, one per epoch

    expected = sequential_table("digits", config, tmp_path / "sequential")
    served = AccuracyTable.from_dict(api.get(f"/api/runs/{run_id}/table/").json())
    assert served.accuracy == expected.accuracy
    assert served.path == expected.path


def test_two_runs_queued_behind_one_worker_both_succeed_without_being_reaped(
    django_user_model,
    workers,  # noqa: F811
    monkeypatch,
    settings,
):
    # each run waits (queued, or running with its candidates queued) while the other one's
    # stage 1 trains for longer than the heartbeat timeout
    for name, value in {
        "PONAS_HEARTBEAT_TIMEOUT": "20",
        "PONAS_HEARTBEAT_SECONDS": "2",
        "PONAS_WATCHDOG_SECONDS": "1",
    }.items():
        monkeypatch.setenv(name, value)
    settings.PONAS_HEARTBEAT_TIMEOUT = 20
    api = token_client(django_user_model)
    # 100 epochs: on an idle machine 40 trained in 13 s, shorter than the timeout
    config = {**TINY, "epochs": 100}
    pool = workers(1)  # (a new pool purges the queues: start it first)
    ids = [
        api.post("/api/runs/", {"preset": "digits", "config": config}, format="json").json()["id"]
        for _ in range(2)
    ]
    waited = 0.0
    for run_id in ids:
        body = wait_for(api, f"/api/runs/{run_id}/", pool, timeout=600)
        assert body["status"] == "succeeded", f"{body}\n{pool.output()}"
        assert body["auto_resumes"] == 0, pool.output()
    runs = SearchRun.objects.filter(pk__in=ids).order_by("pk")
    for first, second in [runs, reversed(runs)]:
        # the second run's stage 1 began after the first one's stage 2 had begun: the first
        # waited at least that long with its candidates behind it in the queue
        waited = max(waited, (second.stage2_started - first.stage2_started).total_seconds())
    assert waited > 20, f"no run waited longer than the timeout ({waited:.0f} s): test too short"


@pytest.fixture
def redis_url(tmp_path):
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [server, "--port", str(port), "--save", "", "--appendonly", "no", "--dir", tmp_path],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait()


def test_with_redis_a_stage_1_longer_than_the_visibility_timeout_has_one_trainer(
    django_user_model,
    workers,  # noqa: F811
    monkeypatch,
    redis_url,
    tmp_path,
):
    from celery import Celery

    from tests.web.helpers import make_run

    visibility = 3
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("CELERY_VISIBILITY_TIMEOUT", str(visibility))
    config = {**TINY, "epochs": 12}
    user = django_user_model.objects.create_user("ada", password="ada-password-1")
    run = make_run(user, config=config, queue="gpu")
    pool = workers(2)
    sender = Celery(broker=redis_url)  # the workers' broker (the test's own is the files')
    sender.conf.broker_transport_options = {
        "visibility_timeout": visibility,
        "global_keyprefix": f"ponas-test-{django_settings.TEST_ID}:",
    }
    sender.send_task(RUN_SEARCH, (run.pk, run.attempt), queue="gpu")
    deadline = time.monotonic() + 300
    while (run := SearchRun.objects.get(pk=run.pk)).status in ("queued", "running"):
        assert time.monotonic() < deadline, pool.output()
        pool.check_alive()
        time.sleep(0.2)
    assert run.status == "succeeded", f"{run.error}\n{pool.output()}"
    stage1 = (run.stage2_started - run.started).total_seconds()
    assert stage1 > visibility, f"stage 1 took {stage1:.1f} s: test too short"
    assert trained_epochs(pool, run.pk) == list(range(1, 13)), pool.output()
    expected = sequential_table("digits", config, tmp_path / "sequential")
    from webapp.runs.tables import accuracy_table

    served = accuracy_table(run)
    assert served.accuracy == expected.accuracy
    assert served.path == expected.path


def test_a_task_whose_process_keeps_dying_fails_the_run_with_the_reason(
    django_user_model,
    workers,  # noqa: F811
    monkeypatch,
    tmp_path,
):
    # a prefork worker: the child running the task is killed (as the out-of-memory killer
    # would), Celery hands the task out again at once, the next delivery finds the dead
    # holder's lease and counts the death; the third death ends the run
    import os
    import signal

    from tests.web.workers import Workers
    from webapp.runs.models import Lease

    monkeypatch.setenv("PONAS_MAX_DEATHS", "3")
    pool = Workers(1, tmp_path, pool="prefork")
    try:
        api = token_client(django_user_model)
        config = {**TINY, "epochs": 500}
        run_id = api.post("/api/runs/", {"preset": "digits", "config": config}, format="json")
        run_id = run_id.json()["id"]
        killed: set[int] = set()
        deadline = time.monotonic() + 180
        while len(killed) < 3:
            lease = Lease.objects.filter(key=f"run {run_id} stage1", task_id__gt="").first()
            if lease is not None and lease.pid not in killed:
                os.kill(lease.pid, signal.SIGKILL)
                killed.add(lease.pid)
            assert time.monotonic() < deadline, pool.output()
            pool.check_alive()
            time.sleep(0.2)
        url = f"/api/runs/{run_id}/"
        while (body := api.get(url).json())["status"] == "running":
            assert time.monotonic() < deadline, pool.output()
            time.sleep(0.2)
        assert body["status"] == "failed", f"{body}\n{pool.output()}"
        assert body["error"] == (
            "the worker process died 3 times while running stage 1 (out of memory?); "
            "resume to try again from the last checkpoint"
        )
        assert body["auto_resumes"] == 0  # not the watchdog: the deliveries were counted
    finally:
        pool.stop()
