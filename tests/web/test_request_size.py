"""What one request may store and what one poll carries are bounded (issue 17, finding 9)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.web.helpers import make_run
from webapp.runs.models import MetricPoint, SearchRun, Stage

pytestmark = pytest.mark.django_db


def start(api, **fields):
    return api.post("/api/runs/", {"preset": "digits", **fields}, format="json")


def test_a_long_run_name_is_refused(api):
    response = start(api, name="x" * 10_000)
    assert response.status_code == 400
    assert response.json() == {"name": ["Ensure this field has no more than 200 characters."]}


@pytest.mark.parametrize("key", ["dataset", "device", "dataset_dir"])
def test_a_megabyte_string_in_a_setting_is_refused(api, key):
    response = start(api, config={key: "x" * 2_500_000})
    assert response.status_code == 400
    assert response.json() == {"config": [f"{key}: at most 200 characters, got 2,500,000"]}
    assert not SearchRun.objects.exists()


def test_a_megabyte_setting_name_is_not_echoed_back(api):
    response = start(api, config={"x" * 2_500_000: 1})
    assert response.status_code == 400
    message = response.json()["config"][0]
    assert message.startswith(f"unknown search settings ['{'x' * 40}']; allowed: [")
    assert len(message) < 1000


def epochs(run, n: int) -> list[MetricPoint]:
    start = timezone.now() - timedelta(hours=1)
    points = []
    for step in range(1, n + 1):
        point = MetricPoint.objects.create(
            run=run, stage=Stage.STAGE1, kind="epoch", step=step, values={"train_loss": 1 / step}
        )
        MetricPoint.objects.filter(pk=point.pk).update(time=start + timedelta(seconds=step))
        points.append(point)
    return points


def test_a_poll_gets_only_the_points_stored_since_the_last_one(api, alice):
    run = make_run(alice)
    epochs(run, 10)
    everything = api.get(f"/api/runs/{run.pk}/").json()["metrics"]
    assert [p["step"] for p in everything] == list(range(1, 11))
    since = everything[6]["time"]  # the client holds epochs 1..7
    response = api.get(f"/api/runs/{run.pk}/", {"since": since})
    assert [p["step"] for p in response.json()["metrics"]] == [8, 9, 10]
    assert (
        api.get(f"/api/runs/{run.pk}/", {"since": everything[-1]["time"]}).json()["metrics"] == []
    )


def test_a_run_with_thousands_of_epochs_sends_only_the_latest(api, alice, settings):
    settings.PONAS_METRICS_LIMIT = 4
    run = make_run(alice)
    epochs(run, 10)
    metrics = api.get(f"/api/runs/{run.pk}/").json()["metrics"]
    assert [p["step"] for p in metrics] == [7, 8, 9, 10]


def test_a_bad_since_is_refused_with_the_reason(api, alice):
    run = make_run(alice)
    response = api.get(f"/api/runs/{run.pk}/", {"since": "yesterday"})
    assert response.status_code == 400
    assert response.json()["since"][0].startswith("Datetime has wrong format.")
