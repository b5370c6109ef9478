"""The worker registry: `GET /api/workers/` and the Workers page list the live workers; a
run whose queue no live worker consumes says so, with the command that starts one; a run
waiting behind other work says where it waits."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from tests.web.helpers import hold_lease, make_run
from webapp.runs.models import Status, Worker

pytestmark = pytest.mark.django_db


def worker(name: str, queues: list[str], seen_ago: float = 0, **fields) -> Worker:
    now = timezone.now()
    return Worker.objects.create(
        name=name,
        queues=queues,
        device=fields.pop("device", "CPU (2 cores)"),
        torch_version="2.5.0",
        started=now - timedelta(hours=1),
        last_seen=now - timedelta(seconds=seen_ago),
        **fields,
    )


def test_the_api_lists_live_workers_with_their_queues_and_device(api, settings):
    settings.PONAS_HEARTBEAT_TIMEOUT = 60
    worker("gpu1@box", ["gpu"], device="NVIDIA H200, 139 GiB", current_task="run_search[x]")
    worker("default@box", ["default"])
    worker("old@box", ["gpu"], seen_ago=3600)  # gone
    body = api.get("/api/workers/").json()
    rows = {w["name"]: w for w in body["results"]}
    assert set(rows) == {"gpu1@box", "default@box"}
    assert rows["gpu1@box"]["queues"] == ["gpu"]
    assert rows["gpu1@box"]["device"] == "NVIDIA H200, 139 GiB"
    assert rows["gpu1@box"]["torch_version"] == "2.5.0"
    assert rows["gpu1@box"]["current_task"] == "run_search"  # its id and arguments: staff only
    assert {"started", "last_seen"} <= set(rows["gpu1@box"])


def test_the_workers_api_needs_a_signed_in_user(client):
    assert client.get("/api/workers/").status_code == 401


def test_a_queued_run_with_no_live_worker_on_its_queue_says_how_to_start_one(api, alice):
    worker("default@box", ["default"])  # nobody on gpu
    run = make_run(alice, Status.QUEUED, queue="gpu")
    waiting = api.get(f"/api/runs/{run.pk}/").json()["waiting"]
    assert waiting["queue"] == "gpu" and waiting["workers"] == 0
    assert waiting["start_command"] == "celery -A webapp worker -Q gpu -P solo"
    assert waiting["message"] == (
        "no live worker consumes queue gpu: start one with `celery -A webapp worker -Q gpu -P solo`"
    )
    client = Client()
    client.force_login(alice)
    page = client.get(f"/runs/{run.pk}/").content.decode()
    assert "No live worker consumes queue <code>gpu</code>" in page
    assert "celery -A webapp worker -Q gpu -P solo" in page


def test_a_queued_run_with_a_live_worker_waits_in_its_queue(api, alice):
    worker("gpu1@box", ["default", "gpu"])
    run = make_run(alice, Status.QUEUED, queue="gpu")
    waiting = api.get(f"/api/runs/{run.pk}/").json()["waiting"]
    assert waiting["workers"] == 1 and waiting["start_command"] is None
    assert waiting["message"].startswith("waiting in queue gpu")
    if waiting["ahead"] is not None:  # the broker counted the queue
        assert waiting["message"].endswith(f"behind {waiting['ahead']} tasks") or waiting[
            "message"
        ].endswith("behind 1 task")


def test_a_run_whose_task_holds_its_lease_is_not_waiting(api, alice):
    run = make_run(alice, Status.RUNNING)
    hold_lease(run, 0, worker="gpu1@box")
    assert api.get(f"/api/runs/{run.pk}/").json()["waiting"] is None
    done = make_run(alice, Status.SUCCEEDED)
    assert api.get(f"/api/runs/{done.pk}/").json()["waiting"] is None


def test_the_workers_page_shows_workers_and_queues_without_one(alice, settings):
    settings.PONAS_HEARTBEAT_TIMEOUT = 60
    worker("gpu1@box", ["gpu"], device="NVIDIA H200, 139 GiB")
    client = Client()
    client.force_login(alice)
    page = client.get("/workers/").content.decode()
    assert 'data-worker="gpu1@box"' in page and "NVIDIA H200, 139 GiB" in page
    assert 'data-idle-queue="default"' in page  # nobody takes the bookkeeping
    assert "celery -A webapp worker -Q default -P solo" in page
    assert 'data-idle-queue="gpu"' not in page


def test_a_plain_worker_command_consumes_both_queues():
    from webapp.celery import app

    assert sorted(app.amqp.queues) == ["default", "gpu"]
