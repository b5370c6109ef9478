"""The runs API: create, list, retrieve, cancel, resume, delete; table, preview, pareto."""

from __future__ import annotations

import csv
import io

import pytest
from rest_framework.test import APIClient

from ponas.solve import pareto_frontier, solve
from tests.web.helpers import client_for, digits_table, make_finished_run, make_run
from webapp.runs.models import MetricPoint, SearchRun, Stage, Status

pytestmark = pytest.mark.django_db


# ---- authentication -------------------------------------------------------------------------


def test_anonymous_user_gets_401_with_a_reason():
    response = APIClient().get("/api/runs/")
    assert response.status_code == 401
    assert response.json() == {"error": "Authentication credentials were not provided."}
    assert response.headers["WWW-Authenticate"] == "Token"


def test_user_gets_a_token_for_username_and_password(alice):
    response = APIClient().post(
        "/api/auth/token/", {"username": "alice", "password": "alice-password-1"}, format="json"
    )
    assert response.status_code == 200
    token = response.json()["token"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get("/api/runs/").status_code == 200


def test_wrong_password_gets_no_token(alice):
    response = APIClient().post(
        "/api/auth/token/", {"username": "alice", "password": "nope"}, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {"non_field_errors": ["Unable to log in with provided credentials."]}


def test_session_login_works_too(alice):
    client = APIClient()
    client.force_login(alice)
    assert client.get("/api/runs/").status_code == 200


# ---- create ---------------------------------------------------------------------------------


def test_user_creates_a_run_and_it_is_queued(api, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        response = api.post(
            "/api/runs/", {"preset": "digits", "config": {"epochs": 2}}, format="json"
        )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "queued"
    assert body["name"] == "digits search"
    assert body["config"] == {"epochs": 2}
    assert body["progress"] == 0.0
    assert len(callbacks) == 1  # the search task is sent once the run is committed
    assert SearchRun.objects.get(pk=body["id"]).owner.username == "alice"


@pytest.mark.parametrize(
    ("payload", "field", "message"),
    [
        (
            {"preset": "mnist"},
            "preset",
            '"mnist" is not a preset; allowed: cifar10, digits, imagenet, shapes',
        ),
        ({}, "preset", "This field is required."),
        (
            {"preset": "digits", "config": {"epochs": 0}},
            "config",
            "epochs must be at least 1, got 0",
        ),
        (
            {"preset": "digits", "config": {"epochs": "many"}},
            "config",
            "epochs='many' is not a valid int",
        ),
        (
            {"preset": "digits", "config": {"lr": 50}},
            "config",
            "lr must be in (0, 10), got 50.0",
        ),
        (
            {"preset": "digits", "config": {"input_size": -3}},
            "config",
            "input_size must be positive, got -3",
        ),
    ],
)
def test_bad_run_gets_an_error_naming_the_field(api, payload, field, message):
    response = api.post("/api/runs/", payload, format="json")
    assert response.status_code == 400
    assert response.json() == {field: [message]}


def test_run_queue_defaults_to_gpu_and_unknown_queues_are_refused(api):
    response = api.post("/api/runs/", {"preset": "digits"}, format="json")
    assert response.status_code == 201 and response.json()["queue"] == "gpu"
    response = api.post("/api/runs/", {"preset": "digits", "queue": "tpu"}, format="json")
    assert response.status_code == 400
    assert response.json()["queue"] == ['"tpu" is not a valid choice.']


def test_unknown_setting_lists_the_allowed_ones(api):
    response = api.post("/api/runs/", {"preset": "digits", "config": {"epoch": 2}}, format="json")
    assert response.status_code == 400
    message = response.json()["config"][0]
    assert message.startswith("unknown search settings ['epoch']; allowed: [")
    assert "'epochs'" in message


def test_config_must_be_an_object(api):
    response = api.post("/api/runs/", {"preset": "digits", "config": [1]}, format="json")
    assert response.status_code == 400
    assert response.json()["config"][0].startswith(
        'expected an object of search settings, e.g. {"epochs": 2}; allowed keys: epochs, '
    )


def test_malformed_json_is_a_400(api):
    response = api.post("/api/runs/", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"].startswith("JSON parse error")


def test_runs_cannot_be_updated(api, alice):
    run = make_run(alice)
    assert api.patch(f"/api/runs/{run.pk}/", {"name": "x"}, format="json").status_code == 405


# ---- list and retrieve ----------------------------------------------------------------------


def test_list_shows_only_my_runs_newest_first_and_paginated(api, alice, bob):
    mine = [make_run(alice, name=f"mine {i}") for i in range(3)]
    make_run(bob)
    body = api.get("/api/runs/?page_size=2").json()
    assert body["count"] == 3
    assert [r["id"] for r in body["results"]] == [mine[2].pk, mine[1].pk]
    assert body["next"].endswith("page=2&page_size=2")


def test_list_filters_by_status_and_preset(api, alice):
    make_run(alice)
    done = make_run(alice, Status.SUCCEEDED)
    body = api.get("/api/runs/?status=succeeded&preset=digits").json()
    assert [r["id"] for r in body["results"]] == [done.pk]
    assert api.get("/api/runs/?preset=imagenet").json()["count"] == 0


def test_unknown_status_filter_lists_the_allowed_ones(api):
    response = api.get("/api/runs/?status=done")
    assert response.status_code == 400
    assert response.json() == {
        "status": ['"done" is not a status; allowed: queued, running, succeeded, failed, cancelled']
    }


def test_detail_has_progress_and_epoch_metrics(api, alice):
    run = make_run(alice, Status.RUNNING, stage=Stage.STAGE1, progress=0.25)
    MetricPoint.objects.create(
        run=run, stage="stage1", kind="epoch", step=1, values={"train_loss": 2.0}
    )
    MetricPoint.objects.create(run=run, stage="stage1", kind="step", step=7, values={"loss": 1.9})
    body = api.get(f"/api/runs/{run.pk}/").json()
    assert body["status"] == "running"
    assert body["stage"] == "stage1"
    assert body["progress"] == 0.25
    assert [(m["kind"], m["step"], m["values"]) for m in body["metrics"]] == [
        ("epoch", 1, {"train_loss": 2.0}),
        ("step", 7, {"loss": 1.9}),
    ]


# ---- other users ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "suffix"),
    [
        ("get", ""),
        ("delete", ""),
        ("post", "cancel/"),
        ("post", "resume/"),
        ("get", "table/"),
        ("get", "table/?format=csv"),
        ("get", "preview/?max_macs=10M"),
        ("get", "pareto/"),
    ],
)
def test_user_cannot_see_or_touch_another_users_run(bob, alice, method, suffix):
    run = make_finished_run(alice)
    response = getattr(client_for(bob), method)(f"/api/runs/{run.pk}/{suffix}")
    assert response.status_code == 404
    assert response.json() == {"error": f"run {run.pk} not found"}
    assert SearchRun.objects.filter(pk=run.pk, status=Status.SUCCEEDED).exists()


def test_missing_run_is_404(api):
    assert api.get("/api/runs/99999/").json() == {"error": "run 99999 not found"}
    assert api.get("/api/runs/abc/").status_code == 404
    assert api.get("/api/runs/99999999999999999999999/").status_code == 404


# ---- cancel, resume, delete -----------------------------------------------------------------


def test_cancelling_a_queued_run_cancels_it_at_once(api, alice):
    run = make_run(alice)
    response = api.post(f"/api/runs/{run.pk}/cancel/")
    assert response.status_code == 202
    assert response.json()["status"] == "cancelled"


def test_cancelling_a_running_run_asks_its_worker_to_stop(api, alice):
    from webapp.runs.leases import take

    run = make_run(alice, Status.RUNNING)
    assert take(f"run {run.pk} stage1", "w1@test", "t1", "stage 1", attempt=1, run=run)
    response = api.post(f"/api/runs/{run.pk}/cancel/")
    assert response.status_code == 202
    assert response.json()["status"] == "running"
    assert response.json()["cancel_requested"] is True


def test_a_finished_run_cannot_be_cancelled(api, finished_run):
    response = api.post(f"/api/runs/{finished_run.pk}/cancel/")
    assert response.status_code == 409
    assert response.json() == {
        "error": f"run {finished_run.pk} is succeeded; only queued or running runs can be cancelled"
    }


def test_resuming_a_failed_run_queues_a_new_attempt(api, alice, django_capture_on_commit_callbacks):
    run = make_run(alice, Status.FAILED, error="stage 1 failed: out of memory")
    with django_capture_on_commit_callbacks() as callbacks:
        response = api.post(f"/api/runs/{run.pk}/resume/")
    assert response.status_code == 202
    assert response.json()["status"] == "queued"
    assert response.json()["error"] == ""
    assert SearchRun.objects.get(pk=run.pk).attempt == 2
    assert len(callbacks) == 1


def test_a_running_run_cannot_be_resumed(api, alice):
    run = make_run(alice, Status.RUNNING)
    response = api.post(f"/api/runs/{run.pk}/resume/")
    assert response.status_code == 409
    assert response.json() == {
        "error": f"run {run.pk} is running; only failed or cancelled runs can be resumed"
    }


def test_a_running_run_cannot_be_deleted(api, alice):
    run = make_run(alice, Status.RUNNING)
    response = api.delete(f"/api/runs/{run.pk}/")
    assert response.status_code == 409
    assert response.json() == {"error": f"run {run.pk} is running: cancel it before deleting it"}


def test_deleting_a_finished_run_removes_it_and_its_files(
    api, finished_run, django_capture_on_commit_callbacks
):
    finished_run.out_dir.mkdir(parents=True)
    (finished_run.out_dir / "table.json").write_text("{}")
    with django_capture_on_commit_callbacks(execute=True):
        assert api.delete(f"/api/runs/{finished_run.pk}/").status_code == 204
    assert not SearchRun.objects.filter(pk=finished_run.pk).exists()
    assert not finished_run.out_dir.exists()


# ---- table, preview, pareto -----------------------------------------------------------------


def test_table_is_the_stored_ponas_table(api, finished_run):
    response = api.get(f"/api/runs/{finished_run.pk}/table/")
    assert response.status_code == 200
    assert response.json() == digits_table().to_dict()


def test_table_as_csv_for_a_spreadsheet(api, finished_run):
    response = api.get(f"/api/runs/{finished_run.pk}/table/?format=csv")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == (
        f'attachment; filename="run-{finished_run.pk}-table.csv"'
    )
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0][:3] == ["layer", "path", "e3_k3"]
    assert len(rows) == 1 + 6
    assert response.content.decode() == digits_table().to_csv()


def test_unknown_table_format_lists_the_allowed_ones(api, finished_run):
    response = api.get(f"/api/runs/{finished_run.pk}/table/?format=xlsx")
    assert response.status_code == 400
    assert response.json() == {"format": ['"xlsx" is not a table format; allowed: json, csv']}


@pytest.mark.parametrize("endpoint", ["table/", "preview/", "pareto/"])
def test_a_run_without_a_table_says_so(api, alice, endpoint):
    run = make_run(alice, Status.RUNNING)
    response = api.get(f"/api/runs/{run.pk}/{endpoint}")
    assert response.status_code == 409
    assert response.json() == {
        "error": f"run {run.pk} has no accuracy table yet (status running); it is ready once "
        "the run has succeeded"
    }


def test_preview_answers_the_exact_solver(api, finished_run):
    table = digits_table()
    budget = table.base_cost["macs"] + sum(
        sorted(m for m in row if m is not None)[2] for row in table.cost["macs"]
    )
    response = api.get(f"/api/runs/{finished_run.pk}/preview/?max_macs={budget}")
    assert response.status_code == 200
    assert response.json() == solve(table, {"macs": float(budget)}).to_dict()
    assert response.json()["cost"]["macs"] <= budget


def test_preview_without_budgets_is_the_best_path(api, finished_run):
    body = api.get(f"/api/runs/{finished_run.pk}/preview/").json()
    assert body["choices"] == digits_table().best_path()
    assert body["loss"] == 0.0


def test_preview_accepts_suffixed_budgets(api, finished_run):
    response = api.get(f"/api/runs/{finished_run.pk}/preview/?max_params=1M&max_macs=50M")
    assert response.status_code == 200
    assert response.json() == solve(digits_table(), {"params": 1e6, "macs": 5e7}).to_dict()


def test_budget_below_the_smallest_network_says_what_is_reachable(api, finished_run):
    response = api.get(f"/api/runs/{finished_run.pk}/preview/?max_macs=1000")
    assert response.status_code == 400
    (message,) = response.json()["max_macs"]
    assert message.startswith("max_macs=1000 is below the smallest network")


@pytest.mark.parametrize("value", ["lots", "-5", "0", "nan", "1e999"])
def test_non_numeric_or_non_positive_budget_is_a_400(api, finished_run, value):
    response = api.get(f"/api/runs/{finished_run.pk}/preview/?max_macs={value}")
    assert response.status_code == 400
    (message,) = response.json()["max_macs"]
    assert message.startswith("invalid budget")


def test_latency_budget_needs_a_latency_table(api, finished_run):
    response = api.get(f"/api/runs/{finished_run.pk}/preview/?max_latency_ms=5")
    assert response.status_code == 400
    assert "latency" in response.json()["max_latency_ms"][0]


def test_pareto_frontier_by_macs_and_by_params(api, finished_run):
    table = digits_table()
    body = api.get(f"/api/runs/{finished_run.pk}/pareto/").json()
    assert body["cost"] == "macs"
    assert body["points"] == [s.to_dict() for s in pareto_frontier(table, "macs")]
    body = api.get(f"/api/runs/{finished_run.pk}/pareto/?cost=params").json()
    assert body["points"] == [s.to_dict() for s in pareto_frontier(table, "params")]


def test_pareto_cost_kind_is_validated(api, finished_run):
    response = api.get(f"/api/runs/{finished_run.pk}/pareto/?cost=flops")
    assert response.status_code == 400
    assert response.json() == {
        "cost": ['"flops" is not a cost kind; allowed: macs, params, latency_ms']
    }
    response = api.get(f"/api/runs/{finished_run.pk}/pareto/?cost=latency_ms")
    assert response.status_code == 400
    assert response.json() == {
        "cost": [f"run {finished_run.pk}'s table has no latency_ms costs; it has macs, params"]
    }


# ---- schema and docs ------------------------------------------------------------------------


def test_openapi_schema_and_swagger_ui_are_served_by_us(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    for path in [
        "/api/runs/",
        "/api/runs/{id}/",
        "/api/runs/{id}/cancel/",
        "/api/runs/{id}/resume/",
        "/api/runs/{id}/table/",
        "/api/runs/{id}/preview/",
        "/api/runs/{id}/pareto/",
        "/api/deployments/",
        "/api/deployments/{id}/",
        "/api/deployments/{id}/download/{fmt}/",
        "/api/auth/token/",
    ]:
        assert path in paths
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert "cdn" not in html.lower()
