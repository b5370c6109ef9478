"""What a user reads and where their work goes (issue 28, items 13 and 14): the workers list
names a task, not its arguments (other users' run ids), to anyone but staff; a device
profile's error is scrubbed like a run's; the path scrubber catches quoted paths and paths
with spaces; a team member's builds and profiles never reach a queue they may not use; the
TensorBoard zip goes to whoever sees the run, made while it is sent."""

from __future__ import annotations

import io
import os
import tracemalloc
import zipfile
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from ponas.files import TENSORBOARD_DIR
from tests.web.helpers import client_for, make_finished_run, make_run, make_team
from webapp.runs.datasets import public_text
from webapp.runs.models import Deployment, DeviceProfile, Status, Worker

pytestmark = pytest.mark.django_db

TASK = "tasks.search.evaluate_candidate[0b7c-task-id] (41, 1, 2, 'e3_k3')"


@pytest.fixture
def busy_worker():
    now = timezone.now()
    return Worker.objects.create(
        name="gpu1@box",
        queues=["gpu"],
        device="CPU",
        torch_version="2.5.0",
        started=now - timedelta(hours=1),
        last_seen=now,
        current_task=TASK,
    )


def test_the_workers_list_names_the_task_not_its_arguments_to_a_user(alice, busy_worker):
    (row,) = client_for(alice).get("/api/workers/").json()["results"]
    assert row["current_task"] == "tasks.search.evaluate_candidate"
    browser = Client()
    browser.force_login(alice)
    page = browser.get("/workers/").content.decode()
    assert "tasks.search.evaluate_candidate" in page
    assert "41, 1" not in page and "0b7c-task-id" not in page


def test_staff_read_the_whole_task(alice, busy_worker):
    alice.is_staff = True
    alice.save()
    (row,) = client_for(alice).get("/api/workers/").json()["results"]
    assert row["current_task"] == TASK
    browser = Client()
    browser.force_login(alice)
    assert "(41, 1, 2, &#x27;e3_k3&#x27;)" in browser.get("/workers/").content.decode()


def test_a_device_profiles_error_names_no_server_path_or_host(alice, settings):
    run = make_finished_run(alice)
    DeviceProfile.objects.create(
        run=run,
        queue="gpu",
        status=Status.FAILED,
        worker="w1@gpu-node-17.internal",
        error=f"timing failed on gpu-node-17.internal: {settings.MEDIA_ROOT}/runs/1/x.pt; "
        "see /var/log/ponas/worker.log",
    )
    (profile,) = client_for(alice).get(f"/api/runs/{run.pk}/profiles/").json()
    assert profile["error"] == (
        "timing failed on the worker: the artifact store/runs/1/x.pt; see (a server path)"
    )


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ('cannot open "/srv/data/secret/x.png"', 'cannot open "(a server path)"'),
        (
            "[Errno 2] No such file or directory: '/srv/my data/images/train/cat/1.png'",
            "[Errno 2] No such file or directory: '(a server path)'",
        ),
        (
            "cannot identify image file /srv/my data/images/train/cat/1.png; skipped",
            "cannot identify image file (a server path); skipped",
        ),
        ("loss was nan at step 3/40", "loss was nan at step 3/40"),
    ],
)
def test_the_path_scrubber_catches_quoted_paths_and_paths_with_spaces(alice, text, shown):
    assert public_text(text, make_run(alice)) == shown


def team_run_on_default(owner, member):
    """A run a staff member queued on ``default``, shared with a team ``member`` is in."""
    owner.is_staff = True
    owner.save()
    team = make_team("vision", members=[member], admins=[owner])
    run = make_finished_run(owner)
    run.team, run.queue = team, "default"
    run.save()
    return run


def test_a_members_build_and_profile_of_a_staff_run_on_default_go_to_a_user_queue(alice, bob):
    run = team_run_on_default(alice, bob)
    response = client_for(bob).post("/api/deployments/", {"run": run.pk}, format="json")
    assert response.status_code == 201, response.content
    assert Deployment.objects.get(pk=response.json()["id"]).queue == "gpu"
    response = client_for(bob).post(f"/api/runs/{run.pk}/profiles/", {}, format="json")
    assert response.status_code == 202, response.content
    assert response.json()["queue"] == "gpu"
    response = client_for(bob).post(
        f"/api/runs/{run.pk}/profiles/", {"queue": "default"}, format="json"
    )
    assert response.status_code == 400
    # the staff owner's own work goes where the run is
    response = client_for(alice).post("/api/deployments/", {"run": run.pk}, format="json")
    assert Deployment.objects.get(pk=response.json()["id"]).queue == "default"
    assert client_for(alice).post(f"/api/runs/{run.pk}/profiles/", {}, "json").json()["queue"] == (
        "default"
    )


def test_a_re_queued_build_goes_back_to_its_own_queue(alice, bob, settings):
    from tests.web.helpers import hold_lease
    from webapp.runs.watchdog import reap_stuck_deployments

    run = team_run_on_default(alice, bob)
    response = client_for(bob).post("/api/deployments/", {"run": run.pk}, format="json")
    deployment = Deployment.objects.get(pk=response.json()["id"])
    Deployment.objects.filter(pk=deployment.pk).update(status=Status.RUNNING)
    hold_lease(deployment, seconds_ago=settings.PONAS_HEARTBEAT_TIMEOUT + 60)
    reaped = reap_stuck_deployments()
    assert reaped.requeued == [deployment.pk]
    deployment.refresh_from_db()
    assert (deployment.status, deployment.queue) == (Status.QUEUED, "gpu")


def big_events(run, size: int) -> bytes:
    folder = run.out_dir / TENSORBOARD_DIR
    folder.mkdir(parents=True)
    data = os.urandom(size)  # incompressible: the archive is as large as the file
    (folder / "events.out.tfevents.1700000000.node.1.0").write_bytes(data)
    return data


def test_a_team_member_downloads_the_tensorboard_zip_and_a_stranger_gets_404(alice, bob):
    from django.contrib.auth import get_user_model

    carol = get_user_model().objects.create_user("carol", password="carol-password-1")
    run = make_finished_run(alice)
    run.team = make_team("vision", members=[bob])
    run.save()
    data = big_events(run, 1000)
    response = client_for(bob).get(f"/api/runs/{run.pk}/tensorboard/")
    assert response.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    (name,) = archive.namelist()
    assert archive.read(name) == data
    response = client_for(carol).get(f"/api/runs/{run.pk}/tensorboard/")
    assert response.status_code == 404


def test_the_tensorboard_zip_is_streamed_not_built_in_memory(alice, tmp_path):
    run = make_finished_run(alice)
    size = 24 * 2**20
    data = big_events(run, size)
    client = client_for(alice)
    received = tmp_path / "download.zip"
    largest = 0
    tracemalloc.start()
    try:
        response = client.get(f"/api/runs/{run.pk}/tensorboard/")
        with received.open("wb") as out:  # the client's copy on disk: not counted
            for chunk in response.streaming_content:
                largest = max(largest, len(chunk))
                out.write(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    archive = zipfile.ZipFile(received)
    assert archive.read(archive.namelist()[0]) == data
    assert largest <= 2**20, largest
    # the web process held a few chunks at a time (4.8 MiB measured), never the 24 MiB archive
    # (main: 29.8 MiB)
    assert peak < size / 2, peak
