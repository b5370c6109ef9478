"""Datasets are registered, not typed: web and API users choose one by name and never reach a
server folder (issue 17, finding 1)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command
from django.test import Client

from tests.web.helpers import client_for, make_run
from webapp.runs.datasets import public_meta, search_settings
from webapp.runs.models import Dataset, SearchRun, Status

pytestmark = pytest.mark.django_db


@pytest.fixture
def data_root(settings, tmp_path):
    root = tmp_path / "data"
    (root / "team-images").mkdir(parents=True)
    settings.PONAS_DATA_ROOTS = [root]
    return root


def register(data_root, name="team-images", **fields) -> Dataset:
    return Dataset.objects.create(
        name=name, kind="imagefolder", root=str(data_root / "team-images"), **fields
    )


def start(client, config, preset="digits"):
    return client.post("/api/runs/", {"preset": preset, "config": config}, format="json")


@pytest.mark.parametrize("folder", ["/etc", "~root", "/var/lib/other-team/images"])
def test_a_user_cannot_train_on_a_server_folder(api, folder):
    response = start(api, {"dataset": "imagefolder", "dataset_dir": folder})
    assert response.status_code == 400
    assert response.json() == {
        "config": [
            "dataset_dir: server folders are not chosen through the web or the API; choose a "
            "dataset by name (available to you: digits, shapes)"
        ]
    }
    assert not SearchRun.objects.exists()


def test_a_dataset_kind_is_not_a_dataset(api):
    response = start(api, {"dataset": "imagefolder"})
    assert response.status_code == 400
    assert response.json() == {
        "config": [
            'dataset: "imagefolder" is not a dataset available to you (an admin registers '
            "datasets); available: digits, shapes"
        ]
    }


def test_a_preset_without_bundled_data_needs_a_registered_dataset(api):
    response = start(api, {}, preset="cifar10")
    assert response.status_code == 400
    assert response.json()["config"][0].startswith(
        'dataset: "cifar10" is not a dataset available to you'
    )


def test_a_registered_dataset_is_used_by_name_by_those_it_is_shared_with(
    alice, bob, django_user_model, data_root
):
    dataset = register(data_root)
    dataset.users.add(alice)
    response = start(client_for(alice), {"dataset": "team-images", "input_size": 16})
    assert response.status_code == 201, response.json()
    assert response.json()["config"] == {"dataset": "team-images", "input_size": 16}
    assert start(client_for(bob), {"dataset": "team-images"}).status_code == 400
    # shared with a group bob is in, then with everyone
    carol = django_user_model.objects.create_user("carol", password="carol-password-1")
    vision = Group.objects.create(name="vision")
    dataset.groups.add(vision)
    bob.groups.add(vision)
    assert start(client_for(bob), {"dataset": "team-images"}).status_code == 201
    assert start(client_for(carol), {"dataset": "team-images"}).status_code == 400
    Dataset.objects.filter(pk=dataset.pk).update(everyone=True)
    assert start(client_for(carol), {"dataset": "team-images"}).status_code == 201


def test_the_workers_get_the_registered_kind_and_folder(data_root):
    register(data_root)
    assert search_settings("imagenet", {"dataset": "team-images", "epochs": 2}) == {
        "dataset": "imagefolder",
        "dataset_dir": str(data_root / "team-images"),
        "epochs": 2,
    }
    assert search_settings("digits", {"epochs": 2}) == {"epochs": 2}  # bundled: as it is


def test_the_new_search_page_offers_registered_datasets_by_name(alice, data_root):
    register(data_root, everyone=True)
    browser = Client()
    browser.force_login(alice)
    page = browser.get("/runs/new/").content.decode()
    assert '<option value="team-images">team-images</option>' in page
    assert str(data_root) not in page
    assert 'name="dataset_dir"' not in page


def test_an_admin_registers_a_dataset_with_a_command(alice, data_root, capsys):
    call_command(
        "register_dataset",
        "team-images",
        "--kind",
        "imagefolder",
        "--root",
        str(data_root / "team-images"),
        "--user",
        "alice",
    )
    assert capsys.readouterr().out.strip() == (
        'dataset "team-images" (imagefolder) registered; who may use it: alice'
    )
    assert list(Dataset.objects.get(name="team-images").users.all()) == [alice]


def test_a_dataset_folder_outside_the_data_roots_cannot_be_registered(data_root):
    with pytest.raises(CommandError) as refused:
        call_command("register_dataset", "etc", "--kind", "imagefolder", "--root", "/etc")
    assert str(refused.value) == (
        f"root: /etc is not under a data root (PONAS_DATA_ROOTS: {data_root.resolve()})"
    )
    # a link inside a data root that leads out of it counts as outside
    (data_root / "escape").symlink_to("/etc")
    with pytest.raises(CommandError):
        call_command(
            "register_dataset", "x", "--kind", "imagefolder", "--root", str(data_root / "escape")
        )
    with pytest.raises(CommandError) as refused:
        call_command(
            "register_dataset", "digits", "--kind", "imagefolder", "--root", str(data_root)
        )
    assert str(refused.value) == 'name: "digits" is a bundled dataset: choose another name'
    assert not Dataset.objects.exists()


def test_error_texts_name_the_dataset_never_its_folder_or_the_worker(alice, data_root, settings):
    register(data_root, everyone=True)
    folder = data_root / "team-images"
    run = make_run(
        alice,
        Status.FAILED,
        config={"dataset": "team-images"},
        worker="w1@gpu-node-17.internal",
        error=f"stage 1 failed: {folder}/train: no such folder (on gpu-node-17.internal); "
        f"checkpoint {settings.MEDIA_ROOT}/runs/1/checkpoints/stage1.pt; cache /srv/cache/x.bin",
    )
    shown = client_for(alice).get(f"/api/runs/{run.pk}/").json()["error"]
    assert shown == (
        'stage 1 failed: dataset "team-images"/train: no such folder (on the worker); '
        "checkpoint the artifact store/runs/1/checkpoints/stage1.pt; cache (a server path)"
    )
    browser = Client()
    browser.force_login(alice)
    page = browser.get(f"/runs/{run.pk}/").content.decode()
    assert str(data_root) not in page and "gpu-node-17" not in page.replace(
        "w1@gpu-node-17.internal", ""
    )


def test_a_tables_meta_names_the_dataset_not_its_folder(alice, data_root):
    register(data_root, everyone=True)
    run = make_run(alice, config={"dataset": "team-images"})
    meta = {
        "dataset": "imagefolder",
        "seed": 0,
        "config": {"dataset": "imagefolder", "dataset_dir": str(data_root / "team-images")},
    }
    assert public_meta(run, meta) == {
        "dataset": "team-images",
        "seed": 0,
        "config": {"dataset": "team-images"},
    }


def test_error_texts_leave_words_that_merely_contain_the_worker_host_alone(alice):
    run = make_run(
        alice,
        Status.FAILED,
        worker="w1@test",
        error="stage 1 failed: expected data_batch_1..5 and test_batch (on test)",
    )
    shown = client_for(alice).get(f"/api/runs/{run.pk}/").json()["error"]
    assert shown == "stage 1 failed: expected data_batch_1..5 and test_batch (on the worker)"
