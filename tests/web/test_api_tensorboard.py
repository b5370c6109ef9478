"""A run's TensorBoard event files, downloaded as one zip from the API and the run page; only
by the run's owner."""

from __future__ import annotations

import io
import re
import socket
import zipfile

import pytest
from django.test import Client

from ponas.files import TENSORBOARD_DIR
from ponas.tracking import TensorBoardCallback
from tests.web.helpers import client_for, make_finished_run, make_run
from webapp.runs.models import Status

pytestmark = pytest.mark.django_db


def write_events(run) -> None:
    """What a run's workers write: a stage-1 epoch and a closed table row, and a deployment's
    accuracy in a folder of its own (the same tracker, the same folder)."""
    space_candidates = ["e3_k3", "e6_k3"]
    search = TensorBoardCallback(run.out_dir / TENSORBOARD_DIR, space_candidates)
    search.epoch_end(1, 2, {"train_loss": 2.1, "train_acc": 0.25, "images_per_s": 900.0})
    search.row_done(0, [0.5, 0.75], "e6_k3")
    search.close()
    deployment = TensorBoardCallback(run.out_dir / TENSORBOARD_DIR / "deployment-7")
    deployment.evaluated({"top1": 0.9, "top5": 1.0})
    deployment.close()


def unpacked(response, folder) -> dict[str, bytes]:
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    archive.extractall(folder)
    return {name: archive.read(name) for name in archive.namelist()}


def test_owner_downloads_the_runs_event_files_and_tensorboard_reads_them(alice, tmp_path):
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    run = make_finished_run(alice)
    write_events(run)
    response = client_for(alice).get(f"/api/runs/{run.pk}/tensorboard/")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"] == (
        f'attachment; filename="run-{run.pk}-tensorboard.zip"'
    )
    names = unpacked(response, tmp_path)
    assert {n.rsplit("/", 1)[0] for n in names} == {
        f"run-{run.pk}-tensorboard",
        f"run-{run.pk}-tensorboard/deployment-7",
    }
    # the files keep their time but not the worker's host name or process id
    assert all(
        re.fullmatch(r"events\.out\.tfevents\.\d+\.ponas\.\d{4}", n.split("/")[-1]) for n in names
    )
    assert not any(socket.gethostname() in n.split("/")[-1].split(".") for n in names)
    # `tensorboard --logdir run-N-tensorboard` shows the search and the deployment as two runs
    runs = EventMultiplexer().AddRunsFromDirectory(str(tmp_path / f"run-{run.pk}-tensorboard"))
    runs.Reload()
    tags = {name: set(t["scalars"]) for name, t in runs.Runs().items()}
    assert tags["."] >= {"epoch/train_loss", "table/layer_0/e6_k3", "table/chosen_accuracy"}
    assert tags["deployment-7"] == {"deploy/top1", "deploy/top5"}
    assert runs.Scalars(".", "table/chosen_accuracy")[0].value == 0.75


def test_another_user_gets_404_for_a_runs_event_files(alice, bob):
    run = make_finished_run(alice)
    write_events(run)
    client = client_for(bob)
    theirs = client.get(f"/api/runs/{run.pk}/tensorboard/")
    missing = client.get(f"/api/runs/{run.pk + 1000}/tensorboard/")
    assert theirs.status_code == missing.status_code == 404
    # the same answer as for a run that does not exist: nothing about alice's run
    assert theirs.json()["error"].replace(str(run.pk), "N") == missing.json()["error"].replace(
        str(run.pk + 1000), "N"
    )
    assert b"events" not in theirs.content


def test_a_run_without_events_yet_says_when_they_come(alice):
    run = make_run(alice, Status.QUEUED)
    response = client_for(alice).get(f"/api/runs/{run.pk}/tensorboard/")
    assert response.status_code == 404
    assert response.json() == {
        "error": f"run {run.pk} has no TensorBoard events yet; its workers write them from the "
        "first stage-1 steps"
    }


def test_links_planted_in_the_events_folder_are_not_followed(alice, tmp_path):
    run = make_finished_run(alice)
    write_events(run)
    secret = tmp_path / "events.out.tfevents.secret"
    secret.write_bytes(b"not the run's")
    (run.out_dir / TENSORBOARD_DIR / "events.out.tfevents.planted").symlink_to(secret)
    names = unpacked(client_for(alice).get(f"/api/runs/{run.pk}/tensorboard/"), tmp_path / "x")
    assert len(names) == 2  # the search's file and the deployment's
    assert b"not the run's" not in b"".join(names.values())


def test_run_page_links_the_event_files_once_there_are_some(alice):
    run = make_finished_run(alice)
    browser = Client()
    browser.force_login(alice)
    link = f'href="/api/runs/{run.pk}/tensorboard/"'
    assert link not in browser.get(f"/runs/{run.pk}/").content.decode()
    write_events(run)
    html = browser.get(f"/runs/{run.pk}/").content.decode()
    assert link in html and ">TensorBoard events</a>" in html
