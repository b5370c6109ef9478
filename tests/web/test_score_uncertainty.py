"""The predicted score of a budget's network, with its standard error, as the API serves it
(issue 18): a script reads how certain the table's ranking score is."""

from __future__ import annotations

import math

import pytest
from django.utils import timezone

from ponas.solve import solve
from tests.web.helpers import make_run, uncertain_table
from webapp.runs.models import Stage, Status
from webapp.runs.tables import store_table

pytestmark = pytest.mark.django_db


@pytest.fixture
def uncertain_run(alice):
    now = timezone.now()
    run = make_run(alice, Status.SUCCEEDED, stage=Stage.DONE, started=now, finished=now)
    store_table(run, uncertain_table())
    return run


def chosen_errors(table, choices: list[str]) -> list[float]:
    return [table.stderr[i][table.candidates.index(c)] for i, c in enumerate(choices)]


def test_preview_gives_the_predicted_score_with_its_standard_error(api, uncertain_run):
    table = uncertain_table()
    budget = table.base_cost["macs"] + sum(
        sorted(m for m in row if m is not None)[1] for row in table.cost["macs"]
    )
    response = api.get(f"/api/runs/{uncertain_run.pk}/preview/?max_macs={budget}")
    assert response.status_code == 200
    body = response.json()
    errors = chosen_errors(table, body["choices"])
    assert body["score_stderr"] == pytest.approx(math.sqrt(sum(e * e for e in errors)))
    assert body == solve(table, {"macs": float(budget)}).to_dict()


def test_preview_of_a_table_without_standard_errors_says_null(api, finished_run):
    body = api.get(f"/api/runs/{finished_run.pk}/preview/").json()
    assert body["score_stderr"] is None
    assert body["score"] > 0


def test_every_pareto_point_carries_its_score_error(api, uncertain_run):
    table = uncertain_table()
    points = api.get(f"/api/runs/{uncertain_run.pk}/pareto/?cost=params").json()["points"]
    assert len(points) >= 2
    for point in points:
        errors = chosen_errors(table, point["choices"])
        assert point["score_stderr"] == pytest.approx(math.sqrt(sum(e * e for e in errors)))


def test_the_schema_documents_the_score_error_as_a_nullable_number(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    preview = schema["paths"]["/api/runs/{id}/preview/"]["get"]["responses"]["200"]
    ref = preview["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    field = schema["components"]["schemas"][ref]["properties"]["score_stderr"]
    assert field["type"] == "number" and field.get("nullable") is True
    assert (
        "not a test accuracy"
        in schema["components"]["schemas"][ref]["properties"]["score"]["description"]
    )
