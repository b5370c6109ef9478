"""Bad input never crashes the server: huge numbers, non-numeric budgets, ids out of range."""

from __future__ import annotations

import pytest

from tests.web.helpers import make_finished_run

pytestmark = pytest.mark.django_db

HUGE = 10**400  # an integer JSON number no float or database column holds
HUGE_TEXT = "9" * 400


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("lots", "invalid budget 'lots': expected a positive number"),
        ("1e400", "invalid budget '1e400': the number is too large"),
        (HUGE_TEXT, f"invalid budget '{HUGE_TEXT}': the number is too large"),
        ("300X", "invalid budget '300X': expected a positive number"),
        ("NaN", "invalid budget 'NaN': expected a positive number"),
        ("inf", "invalid budget 'inf': expected a positive number"),
    ],
)
def test_preview_budget_that_is_not_a_usable_number_is_a_400(api, finished_run, value, message):
    response = api.get(f"/api/runs/{finished_run.pk}/preview/", {"max_params": value})
    assert response.status_code == 400
    (error,) = response.json()["max_params"]
    assert error.startswith(message)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("lots", "invalid budget 'lots': expected a positive number"),
        (HUGE_TEXT, f"invalid budget '{HUGE_TEXT}': the number is too large"),
        (HUGE, "invalid budget 1000...: the number is too large"),
        (True, "invalid budget True: expected a positive number"),
        ([1], "invalid budget [1]: expected a positive number"),
        ({"m": 1}, "invalid budget {'m': 1}: expected a positive number"),
    ],
)
def test_deployment_budget_that_is_not_a_usable_number_is_a_400(api, finished_run, value, message):
    response = api.post(
        "/api/deployments/", {"run": finished_run.pk, "max_macs": value}, format="json"
    )
    assert response.status_code == 400
    (error,) = response.json()["max_macs"]
    assert error.startswith(message)


def test_a_huge_json_float_budget_is_a_400(api, finished_run):
    body = f'{{"run": {finished_run.pk}, "max_macs": 1e400}}'
    response = api.post("/api/deployments/", body, content_type="application/json")
    assert response.status_code == 400
    assert "max_macs" in response.json()


@pytest.mark.parametrize("run", [HUGE, -1, 2**63, 1.5, "1; DROP TABLE"])
def test_a_run_id_out_of_range_is_a_400_naming_the_field(api, alice, run):
    make_finished_run(alice)
    response = api.post("/api/deployments/", {"run": run}, format="json")
    assert response.status_code == 400
    assert list(response.json()) == ["run"]


@pytest.mark.parametrize(
    "url",
    [
        f"/api/runs/{HUGE_TEXT}/",
        f"/api/runs/{2**63}/preview/",
        f"/api/deployments/{2**63}/",
        f"/api/deployments/{HUGE_TEXT}/download/pt/",
        f"/api/deployments/?run={HUGE_TEXT}",
        f"/api/runs/?page={HUGE_TEXT}",
    ],
)
def test_huge_ids_and_pages_are_4xx_not_5xx(api, url):
    response = api.get(url)
    assert 400 <= response.status_code < 500, response.content
    assert response["Content-Type"] == "application/json"


def test_a_huge_page_size_is_capped(api):
    assert api.get(f"/api/runs/?page_size={HUGE_TEXT}").status_code == 200


def test_finetune_epochs_huge_is_a_400(api, finished_run):
    response = api.post(
        "/api/deployments/", {"run": finished_run.pk, "finetune_epochs": HUGE}, format="json"
    )
    assert response.status_code == 400
    assert list(response.json()) == ["finetune_epochs"]


def test_a_huge_run_setting_is_a_400(api):
    response = api.post(
        "/api/runs/", {"preset": "digits", "config": {"epochs": HUGE}}, format="json"
    )
    assert response.status_code == 400
    assert list(response.json()) == ["config"]
