"""Registered datasets (issue 28, items 9 and 10): registering again sets who may use it (the
users and groups not named lose access, as docs/security.md says), and the folder is stored
with its links resolved and checked again where a run starts: a folder swapped for a link, or
a link inside it that leads out, fails the run with the reason."""

from __future__ import annotations

import shutil

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command

from tests.web.helpers import client_for
from webapp.runs.datasets import DatasetMoved, check_folder, search_settings
from webapp.runs.models import Dataset, SearchRun

pytestmark = pytest.mark.django_db

MOVED = (
    'dataset "team-images": its folder is no longer the one registered (a link on its path '
    "was changed, or PONAS_DATA_ROOTS no longer holds it); an admin registers it again "
    "(manage.py register_dataset) to use a new folder"
)


@pytest.fixture
def data_root(settings, tmp_path):
    root = tmp_path / "data"
    for folder in ["team-images/train/cat", "other-team/train/cat"]:
        (root / folder).mkdir(parents=True)
    settings.PONAS_DATA_ROOTS = [root]
    return root.resolve()


def register(root, *args: str) -> str:
    from io import StringIO

    out = StringIO()
    call_command(
        "register_dataset",
        "team-images",
        "--kind",
        "imagefolder",
        "--root",
        str(root),
        *args,
        stdout=out,
    )
    return out.getvalue().strip()


def test_registering_again_sets_who_may_use_the_dataset(data_root, alice, bob):
    vision = Group.objects.create(name="vision")
    register(data_root / "team-images", "--user", "alice", "--user", "bob", "--group", "vision")
    dataset = Dataset.objects.get()
    assert set(dataset.users.all()) == {alice, bob}
    assert list(dataset.groups.all()) == [vision]
    out = register(data_root / "team-images", "--user", "alice")
    assert out == (
        'dataset "team-images" (imagefolder) registered; who may use it: alice; '
        "access removed for: bob, group vision"
    )
    assert list(dataset.users.all()) == [alice]
    assert not dataset.groups.exists()
    response = client_for(bob).post(
        "/api/runs/", {"preset": "digits", "config": {"dataset": "team-images"}}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["config"][0].startswith(
        'dataset: "team-images" is not a dataset available to you'
    )
    register(data_root / "team-images", "--everyone")
    assert not dataset.users.exists()


def test_the_folder_is_stored_with_its_links_resolved(data_root):
    link = data_root / "current"
    link.symlink_to(data_root / "team-images")
    register(link)
    dataset = Dataset.objects.get()
    assert dataset.root == str(data_root / "team-images")
    # re-pointing the link later moves nothing: runs read the folder registered
    link.unlink()
    link.symlink_to(data_root / "other-team")
    assert search_settings("digits", {"dataset": "team-images"})["dataset_dir"] == dataset.root


def test_a_folder_swapped_for_a_link_is_refused_where_a_run_starts(data_root, alice):
    register(data_root / "team-images", "--user", "alice")
    shutil.rmtree(data_root / "team-images")
    (data_root / "team-images").symlink_to(data_root / "other-team")
    with pytest.raises(DatasetMoved) as refused:
        search_settings("digits", {"dataset": "team-images"})
    assert str(refused.value) == MOVED
    response = client_for(alice).post(
        "/api/runs/", {"preset": "digits", "config": {"dataset": "team-images"}}, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {"config": [MOVED]}
    assert not SearchRun.objects.exists()


@pytest.mark.parametrize("inside", ["train", "train/dog"])
def test_a_link_inside_the_folder_that_leads_out_is_refused(data_root, tmp_path, inside):
    register(data_root / "team-images")
    outside = tmp_path / "secret"
    outside.mkdir()
    if inside == "train":
        shutil.rmtree(data_root / "team-images" / "train")
    (data_root / "team-images" / inside).symlink_to(outside)
    with pytest.raises(DatasetMoved) as refused:
        check_folder(Dataset.objects.get())
    assert str(refused.value).startswith(
        f'dataset "team-images": {inside} inside its folder is a link that leads out of it'
    )
    assert str(tmp_path) not in str(refused.value)


def test_links_that_stay_inside_the_folder_are_fine(data_root):
    register(data_root / "team-images")
    (data_root / "team-images" / "val").symlink_to(data_root / "team-images" / "train")
    check_folder(Dataset.objects.get())


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_run_whose_folder_was_swapped_after_it_was_queued_fails_on_the_worker(
    django_user_model, data_root, tmp_path
):
    from tests.web.test_api_workers import TINY, token_client, wait_for
    from tests.web.workers import Workers

    register(data_root / "team-images", "--everyone")
    api = token_client(django_user_model)
    config = {**TINY, "dataset": "team-images"}
    response = api.post("/api/runs/", {"preset": "digits", "config": config}, format="json")
    assert response.status_code == 201, response.json()
    # after it was queued, someone swaps the folder for a link to another team's data
    shutil.rmtree(data_root / "team-images")
    (data_root / "team-images").symlink_to(data_root / "other-team")
    pool = Workers(1, tmp_path)
    try:
        body = wait_for(api, f"/api/runs/{response.json()['id']}/", pool)
    finally:
        pool.stop()
    assert body["status"] == "failed", f"{body}\n{pool.output()}"
    assert body["error"] == f"stage 1 failed: {MOVED}"
