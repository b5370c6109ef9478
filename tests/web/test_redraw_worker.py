"""A redraw through a real worker: a tiny digits search, then stage 2 again on its supernet
with another seed; the redraw trains no stage 1, its stage 2 draws from the new seed, and its
entry noise against the search is in noise.json and behind ``noise/``."""

from __future__ import annotations

import pytest

from ponas import noise
from ponas.search import load_checkpoint
from ponas.table import AccuracyTable
from tests.web.test_api_workers import (  # noqa: F401 (workers is a fixture)
    TINY,
    token_client,
    wait_for,
    workers,
)
from webapp.runs.models import MetricPoint, SearchRun

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_a_redraw_runs_stage2_again_on_the_supernet_and_measures_its_noise(
    django_user_model,
    workers,  # noqa: F811
):
    pool = workers(1)
    api = token_client(django_user_model)
    response = api.post("/api/runs/", {"preset": "digits", "config": TINY}, format="json")
    assert response.status_code == 201, response.json()
    source = wait_for(api, f"/api/runs/{response.json()['id']}/", pool)
    assert source["status"] == "succeeded", f"{source}\n{pool.output()}"

    response = api.post(f"/api/runs/{source['id']}/redraw/", {"stage2_seed": 5}, format="json")
    assert response.status_code == 201, response.json()
    redraw = wait_for(api, f"/api/runs/{response.json()['id']}/", pool)
    assert redraw["status"] == "succeeded", f"{redraw}\n{pool.output()}"
    assert redraw["source_run"] == source["id"] and redraw["stage"] == "done"
    assert api.get(f"/api/runs/{source['id']}/").json()["redraws"] == [redraw["id"]]

    run = SearchRun.objects.get(pk=redraw["id"])
    # no stage 1 trained: no stage-1 curve; its checkpoint is the source's weights with the
    # redraw's stage-2 seed, which stage 2 drew from
    assert not MetricPoint.objects.filter(run=run, stage="stage1").exists()
    first = SearchRun.objects.get(pk=source["id"])
    own, theirs = load_checkpoint(run.stage1_checkpoint), load_checkpoint(first.stage1_checkpoint)
    assert own["config"]["stage2_seed"] == 5 and theirs["config"]["stage2_seed"] == -1
    assert own["epoch"] == theirs["epoch"]
    assert all((own["model"][k] == v).all() for k, v in theirs["model"].items())
    table = AccuracyTable.load(run.out_dir / "table.json")
    assert table.meta["config"]["stage2_seed"] == 5
    original = AccuracyTable.load(first.out_dir / "table.json")
    assert table.accuracy != original.accuracy  # another draw: other entries

    doc = noise.load(run.noise_file)
    assert doc is not None and doc["stage2_seeds"] == [-1, 5]
    assert len(doc["layers"]) == table.num_layers
    assert doc == noise.measure(original, table) | {"agreement": doc["agreement"]}
    response = api.get(f"/api/runs/{run.pk}/noise/")
    assert response.status_code == 200 and response.json() == doc
