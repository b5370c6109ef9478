"""The table's standard errors as the web app stores and serves them, and the estimate the
new-search page shows before Start (issue 14)."""

from __future__ import annotations

import pytest
from django.utils import timezone

from ponas.table import AccuracyTable
from tests.web.helpers import digits_table, make_run
from webapp.runs.models import Stage, Status, TableEntry
from webapp.runs.tables import store_table

pytestmark = pytest.mark.django_db


def table_with_stderr() -> AccuracyTable:
    d = digits_table().to_dict()
    d["stderr"] = [[None if a is None else round(a / 100, 6) for a in row] for row in d["accuracy"]]
    d["meta"]["validation"] = {"images": 300, "of": 300, "drawn": "the whole validation split"}
    return AccuracyTable.from_dict(d)


def test_a_tables_standard_errors_are_stored_per_entry_and_served_with_it(api, alice):
    now = timezone.now()
    run = make_run(alice, Status.SUCCEEDED, stage=Stage.DONE, started=now, finished=now)
    table = table_with_stderr()
    store_table(run, table)
    entry = TableEntry.objects.get(run=run, layer=0, candidate="e3_k3")
    assert entry.stderr == table.stderr[0][0]
    served = api.get(f"/api/runs/{run.pk}/table/").json()
    assert served == table.to_dict()
    csv_text = api.get(f"/api/runs/{run.pk}/table/?format=csv").content.decode()
    assert csv_text == table.to_csv() and "stderr:e3_k3" in csv_text.splitlines()[0]


def test_a_table_without_standard_errors_is_served_as_before(api, finished_run):
    served = api.get(f"/api/runs/{finished_run.pk}/table/").json()
    assert "stderr" not in served


def test_the_run_page_says_how_many_validation_images_scored_each_entry(client, alice):
    now = timezone.now()
    run = make_run(alice, Status.SUCCEEDED, stage=Stage.DONE, started=now, finished=now)
    store_table(run, table_with_stderr())
    client.force_login(alice)
    page = client.get(f"/runs/{run.pk}/").content.decode()
    assert (
        'on <b id="validation-images">300</b> held-out images, the whole validation split' in page
    )


def test_the_plan_estimates_a_search_before_it_runs_and_creates_nothing(api):
    body = {"preset": "digits", "config": {"epochs": 10}, "images_per_s": 500}
    response = api.post("/api/runs/plan/", body, format="json")
    assert response.status_code == 200
    plan = response.json()
    assert plan["stages"][0]["steps"] == 10 * (1138 // 64)
    assert plan["gpu_hours"] > 0 and plan["paper_gpu_hours"] == 210
    assert "GPU-hours at 500 images/s" in plan["text"]
    assert api.get("/api/runs/").json()["count"] == 0


def test_the_plan_refuses_what_a_run_would_refuse(api):
    response = api.post(
        "/api/runs/plan/", {"preset": "digits", "config": {"epochs": 0}}, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {"config": ["epochs must be at least 1, got 0"]}
