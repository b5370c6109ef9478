"""A hung task is reaped: a run whose data-loading step blocks for good (its images are named
pipes nobody writes, as a dead network mount would hang) sits in a live worker that still
beats; its lease stops being renewed once the work makes no progress for
PONAS_PROGRESS_TIMEOUT, and the watchdog fails the run (no automatic resume left) instead of
leaving it running for ever. Cancel is then no longer needed to free the slot."""

from __future__ import annotations

import os
import time

import pytest

from tests.web.helpers import client_for
from tests.web.test_api_workers import workers  # noqa: F401 (workers is a fixture)
from webapp.runs.models import Dataset, Lease, SearchRun, Status

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_a_run_whose_step_hangs_in_a_live_worker_is_reaped(
    alice,
    workers,  # noqa: F811
    settings,
    monkeypatch,
    tmp_path,
):
    root = tmp_path / "data"
    pipes = []
    for split in ("train", "val"):
        for label in ("a", "b"):
            folder = root / "hang" / split / label
            folder.mkdir(parents=True)
            for i in range(4):
                os.mkfifo(folder / f"{i}.png")  # opening one for reading blocks: a hang
                pipes.append(folder / f"{i}.png")
    for name, value in {
        "PONAS_DATA_ROOTS": str(root),
        "PONAS_PROGRESS_TIMEOUT": "4",
        "PONAS_HEARTBEAT_TIMEOUT": "3",
        "PONAS_HEARTBEAT_SECONDS": "0.5",
        "PONAS_WATCHDOG_SECONDS": "0.5",
        "PONAS_AUTO_RESUMES": "0",
    }.items():
        monkeypatch.setenv(name, value)  # (the workers read these from the environment)
    settings.PONAS_DATA_ROOTS = [root]
    Dataset.objects.create(name="hang", kind="imagefolder", root=str(root / "hang"), everyone=True)
    api = client_for(alice)
    config = {"dataset": "hang", "epochs": 2, "warmup_epochs": 0, "input_size": 8, "batch_size": 2}
    config.update(num_workers=0, val_size=0.5)
    response = api.post("/api/runs/", {"preset": "imagenet", "config": config}, format="json")
    assert response.status_code == 201, response.json()
    run_id = response.json()["id"]
    pool = workers(1)
    try:
        held = Lease.objects.filter(run_id=run_id, task_id__gt="")
        deadline = time.monotonic() + 120
        while not held.exists():
            assert time.monotonic() < deadline, pool.output()
            pool.check_alive()
            time.sleep(0.1)
        began = time.monotonic()
        while (run := SearchRun.objects.get(pk=run_id)).status in (Status.QUEUED, Status.RUNNING):
            assert time.monotonic() - began < 60, f"still running:\n{pool.output()}"
            pool.check_alive()  # the worker lives on (hung in its task, beating)
            time.sleep(0.2)
        assert run.status == Status.FAILED, run.error
        assert run.error.startswith("the worker stopped sending heartbeats at "), run.error
        assert pool.procs[0].poll() is None  # the worker itself was not killed
    finally:
        for pipe in pipes:  # let the hung read go on: it fails, and the worker can stop
            try:
                fd = os.open(pipe, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                continue
            os.write(fd, b"not an image")
            os.close(fd)
    time.sleep(2)
    assert SearchRun.objects.get(pk=run_id).status == Status.FAILED  # not overwritten
