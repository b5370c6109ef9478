"""Several jobs at once on two real workers, and a dataset the workers cannot read.

Runs against whatever the session uses: SQLite + the filesystem broker by default,
PostgreSQL + Redis under .ci/run.
"""

from __future__ import annotations

import pytest

from ponas.table import AccuracyTable
from tests.web.test_api_workers import (  # noqa: F401 (workers is a fixture)
    TINY,
    token_client,
    wait_for,
    workers,
)
from webapp.runs.models import Dataset, SearchRun, TableEntry

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_two_runs_and_three_deployments_at_once_finish_correctly(
    django_user_model,
    workers,  # noqa: F811
):
    pool = workers(2)
    api = token_client(django_user_model)
    urls = []
    for seed in (1, 2):
        response = api.post(
            "/api/runs/",
            {"name": f"seed {seed}", "preset": "digits", "config": {**TINY, "seed": seed}},
            format="json",
        )
        assert response.status_code == 201, response.json()
        urls.append(f"/api/runs/{response.json()['id']}/")
    runs = [wait_for(api, url, pool) for url in urls]
    for body in runs:
        assert body["status"] == "succeeded", f"{body}\n{pool.output()}"
        run = SearchRun.objects.get(pk=body["id"])
        # each run's rows are its own and complete: no row lost or written twice
        assert TableEntry.objects.filter(run=run).count() == 39
        served = AccuracyTable.from_dict(api.get(f"{urls[runs.index(body)]}table/").json())
        written = AccuracyTable.load(run.out_dir / "table.json")
        assert served.accuracy == written.accuracy and served.path == written.path
    assert runs[0]["path"] != runs[1]["path"] or (
        TableEntry.objects.filter(run_id=runs[0]["id"]).values_list("accuracy", flat=True)
        != TableEntry.objects.filter(run_id=runs[1]["id"]).values_list("accuracy", flat=True)
    )

    # three deployments at once, from both runs
    deployments = []
    for run, budget_index in ((runs[0], 0), (runs[0], -1), (runs[1], 0)):
        front = api.get(f"/api/runs/{run['id']}/pareto/?cost=macs").json()["points"]
        budget = front[budget_index]["cost"]["macs"]
        response = api.post(
            "/api/deployments/", {"run": run["id"], "max_macs": budget}, format="json"
        )
        assert response.status_code == 201, response.json()
        deployments.append((response.json()["id"], budget, front[budget_index]["choices"]))
    for deployment_id, budget, choices in deployments:
        body = wait_for(api, f"/api/deployments/{deployment_id}/", pool)
        assert body["status"] == "succeeded", f"{body}\n{pool.output()}"
        assert body["choices"] == choices
        assert body["cost"]["macs"] <= budget
        assert api.get(body["downloads"]["pt"]).status_code == 200


@pytest.mark.parametrize("kind", ["missing", "not a dataset"])
def test_a_dataset_the_workers_cannot_read_fails_the_run_with_a_readable_error(
    django_user_model,
    workers,  # noqa: F811
    settings,
    tmp_path,
    kind,
):
    settings.PONAS_DATA_ROOTS = [tmp_path]
    folder = tmp_path / "cifar"
    if kind == "not a dataset":
        folder.mkdir()
        (folder / "data_batch_1").write_bytes(b"these are not pickled images")
        (folder / "test_batch").write_bytes(b"nor is this")
    Dataset.objects.create(name="team-cifar", kind="cifar10", root=str(folder), everyone=True)
    pool = workers(1)
    api = token_client(django_user_model)
    config = {**TINY, "input_size": 32, "dataset": "team-cifar"}
    response = api.post("/api/runs/", {"preset": "cifar10", "config": config}, format="json")
    assert response.status_code == 201, response.json()
    body = wait_for(api, f"/api/runs/{response.json()['id']}/", pool)
    assert body["status"] == "failed"
    error = body["error"]
    # The user reads the dataset's name, never the folder it lives in on the workers.
    assert error.startswith('stage 1 failed: dataset "team-cifar"'), error
    assert str(tmp_path) not in error
    if kind == "missing":
        assert error == (
            'stage 1 failed: dataset "team-cifar": no such folder; expected data_batch_1..5 '
            "and test_batch (python pickle batches)"
        )
    assert "Traceback" not in error and "\n" not in error
