"""A device profile measured by a real Celery worker on its own device (here: its CPU)."""

from __future__ import annotations

import time

import pytest

from ponas.space import load_space
from tests.web.helpers import client_for, make_finished_run
from tests.web.test_api_workers import workers  # noqa: F401 (fixture)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_a_worker_times_the_blocks_on_its_device_and_the_budget_uses_them(
    alice,
    workers,  # noqa: F811
):
    pool = workers(1)
    run = make_finished_run(alice)
    api = client_for(alice)
    response = api.post(f"/api/runs/{run.pk}/profiles/", {"queue": "gpu"}, format="json")
    assert response.status_code == 202, response.json()
    assert response.json()["status"] == "queued"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        (body,) = api.get(f"/api/runs/{run.pk}/profiles/").json()
        if body["status"] not in ("queued", "running"):
            break
        pool.check_alive()
        time.sleep(0.5)
    assert body["status"] == "succeeded", f"{body}\n{pool.output()}"
    assert "CPU" in body["device"] and body["worker"] == "w1@test"
    space = load_space("digits")
    lut = body["lut"]
    assert lut["device"] == body["device"] and len(lut["layers"]) == space.num_layers
    assert all(
        (ms is None) == (not space.allowed(i, c))
        for i, row in enumerate(lut["layers"])
        for c, ms in zip(space.candidates, row, strict=True)
    )
    frontier = api.get(f"/api/runs/{run.pk}/pareto/?cost=latency_ms&profile={body['id']}")
    assert frontier.status_code == 200 and frontier.json()["points"]
    cheapest = frontier.json()["points"][0]["cost"]["latency_ms"]
    preview = api.get(f"/api/runs/{run.pk}/preview/?profile={body['id']}&max_latency_ms={cheapest}")
    assert preview.json()["cost"]["latency_ms"] <= cheapest
