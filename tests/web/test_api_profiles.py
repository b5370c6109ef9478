"""Device profiles: "Profile latency" on a run sends the timing to a queue the user picks; the
worker's lookup table then gives ``preview``, ``pareto`` and deployments latency budgets."""

from __future__ import annotations

import pytest

from ponas.cost import with_latency
from ponas.solve import solve
from ponas.space import load_space
from tests.web.helpers import client_for, make_finished_run, make_run
from webapp.runs.models import DeviceProfile, Status
from webapp.runs.tables import accuracy_table

pytestmark = pytest.mark.django_db


def board_lut() -> dict:
    """What a worker on a made-up board would measure for the digits space."""
    space = load_space("digits")
    return {
        "format": "ponas-latency/1",
        "space": "digits",
        "spec": space.to_dict(),
        "device": "test board",
        "batch": 1,
        "candidates": list(space.candidates),
        "base_ms": 2.0,
        "layers": [
            [
                0.1 * (i + 1) * (j + 1) if space.allowed(i, c) else None
                for j, c in enumerate(space.candidates)
            ]
            for i in range(space.num_layers)
        ],
    }


def measured_profile(run) -> DeviceProfile:
    return DeviceProfile.objects.create(
        run=run, queue="gpu", status=Status.SUCCEEDED, device="test board", lut=board_lut()
    )


def test_profiling_a_run_queues_the_timing_on_the_queue_the_user_picks(api, finished_run):
    response = api.post(f"/api/runs/{finished_run.pk}/profiles/", {"queue": "gpu"}, format="json")
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["status"] == "queued" and body["queue"] == "gpu" and body["lut"] is None
    listed = api.get(f"/api/runs/{finished_run.pk}/profiles/").json()
    assert [p["id"] for p in listed] == [body["id"]]


def test_the_bookkeeping_queue_is_not_a_users_to_pick(api, finished_run):
    response = api.post(
        f"/api/runs/{finished_run.pk}/profiles/", {"queue": "default"}, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {
        "queue": ['the "default" queue is kept for the bookkeeping every run needs; allowed: gpu']
    }


def test_a_run_without_a_table_cannot_be_profiled(api, alice):
    run = make_run(alice, Status.RUNNING)
    response = api.post(f"/api/runs/{run.pk}/profiles/", {"queue": "gpu"}, format="json")
    assert response.status_code == 409
    assert "has no accuracy table yet (status running)" in response.json()["error"]


def test_another_users_run_and_profiles_are_not_found(finished_run, bob):
    measured_profile(finished_run)
    other = client_for(bob)
    assert other.get(f"/api/runs/{finished_run.pk}/profiles/").status_code == 404
    assert (
        other.post(f"/api/runs/{finished_run.pk}/profiles/", {}, format="json").status_code == 404
    )


def test_preview_pareto_and_deployments_budget_in_a_profiles_latency(api, finished_run):
    profile = measured_profile(finished_run)
    table = with_latency(accuracy_table(finished_run), board_lut())
    fastest = solve(table, {"latency_ms": 1e9}).cost["latency_ms"]
    budget = round(fastest * 0.8, 3)
    url = f"/api/runs/{finished_run.pk}/"

    preview = api.get(url + f"preview/?profile={profile.pk}&max_latency_ms={budget}")
    assert preview.status_code == 200, preview.json()
    assert preview.json()["choices"] == solve(table, {"latency_ms": budget}).choices
    assert preview.json()["cost"]["latency_ms"] <= budget

    pareto = api.get(url + f"pareto/?cost=latency_ms&profile={profile.pk}").json()
    assert pareto["cost"] == "latency_ms" and len(pareto["points"]) > 1

    served = api.get(url + f"table/?profile={profile.pk}").json()
    assert served["meta"]["latency_device"] == "test board"

    created = api.post(
        "/api/deployments/",
        {"run": finished_run.pk, "max_latency_ms": budget, "profile": profile.pk},
        format="json",
    )
    assert created.status_code == 201, created.json()
    assert created.json()["profile"] == profile.pk
    assert created.json()["choices"] == preview.json()["choices"]
    assert DeviceProfile.objects.get(pk=profile.pk).deployments.count() == 1


def test_a_latency_budget_without_a_profile_says_the_table_has_none(api, finished_run):
    response = api.get(f"/api/runs/{finished_run.pk}/preview/?max_latency_ms=5")
    assert response.status_code == 400
    assert "unknown cost kind 'latency_ms'" in response.json()["max_latency_ms"][0]


def test_a_profile_of_another_run_or_not_measured_yet_is_refused(api, alice, finished_run):
    other_run = make_finished_run(alice, seed=1)
    profile = measured_profile(other_run)
    response = api.get(f"/api/runs/{finished_run.pk}/preview/?profile={profile.pk}")
    assert response.status_code == 400
    assert response.json() == {
        "profile": [f"device profile {profile.pk} is of run {other_run.pk}, not {finished_run.pk}"]
    }
    queued = DeviceProfile.objects.create(run=finished_run, queue="gpu")
    response = api.post(
        "/api/deployments/",
        {"run": finished_run.pk, "profile": queued.pk, "max_latency_ms": 5},
        format="json",
    )
    assert response.status_code == 400
    assert response.json() == {
        "profile": [f"device profile {queued.pk} not found (or not measured yet)"]
    }


def test_profiles_being_measured_count_against_the_users_quota(api, finished_run, settings):
    settings.PONAS_MAX_ACTIVE_PROFILES = 1
    url = f"/api/runs/{finished_run.pk}/profiles/"
    assert api.post(url, {"queue": "gpu"}, format="json").status_code == 202
    response = api.post(url, {"queue": "gpu"}, format="json")
    assert response.status_code == 429
    assert response.json()["error"].startswith(
        "you have 1 device profile being measured, the most this server allows one user (1)"
    )
