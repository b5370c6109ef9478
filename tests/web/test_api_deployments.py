"""The deployments API: create (validated against the run's table), list, retrieve, download."""

from __future__ import annotations

import pytest

from ponas.solve import solve
from tests.web.helpers import client_for, digits_table, make_finished_run, make_run
from webapp.runs.models import Artifact, Deployment, Status

pytestmark = pytest.mark.django_db


def test_user_deploys_a_run_for_a_budget(api, finished_run, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        response = api.post(
            "/api/deployments/",
            {"run": finished_run.pk, "max_macs": "20M", "finetune_epochs": 1},
            format="json",
        )
    assert response.status_code == 201, response.json()
    body = response.json()
    expected = solve(digits_table(), {"macs": 20e6})
    assert body["status"] == "queued"
    assert body["choices"] == expected.choices
    assert body["predicted_score"] == expected.score
    assert body["cost"] == expected.cost
    assert body["max_macs"] == 20e6
    assert body["formats"] == ["pt", "pt2", "onnx"]  # torchscript (legacy) only when asked
    assert body["downloads"] == {}
    assert len(callbacks) == 1  # the build task


def test_formats_are_kept_in_canonical_order(api, finished_run):
    response = api.post(
        "/api/deployments/", {"run": finished_run.pk, "formats": ["onnx", "pt"]}, format="json"
    )
    assert response.json()["formats"] == ["pt", "onnx"]


@pytest.mark.parametrize(
    ("payload", "field", "message"),
    [
        (
            {"formats": ["zip"]},
            "formats",
            '"zip" is not a format; allowed: pt, pt2, onnx, torchscript',
        ),
        ({"formats": []}, "formats", "give at least one format: pt, pt2, onnx, torchscript"),
        (
            {"formats": "pt"},
            "formats",
            "expected a list of formats (pt, pt2, onnx, torchscript), got str",
        ),
        (
            {"finetune_epochs": -1},
            "finetune_epochs",
            "Ensure this value is greater than or equal to 0.",
        ),
        (
            {"finetune_epochs": 1000},
            "finetune_epochs",
            "Ensure this value is less than or equal to 100.",
        ),
        (
            {"max_params": "a lot"},
            "max_params",
            "invalid budget 'a lot': expected a positive number with an optional K, M or G "
            "suffix (e.g. 300M, 5.1m, 2e6, 20)",
        ),
        ({"max_macs": -3}, "max_macs", "invalid budget -3: a budget must be greater than 0"),
    ],
)
def test_bad_deployment_gets_an_error_naming_the_field(api, finished_run, payload, field, message):
    response = api.post("/api/deployments/", {"run": finished_run.pk, **payload}, format="json")
    assert response.status_code == 400
    assert response.json() == {field: [message]}


def test_budget_below_the_smallest_network_is_refused_at_once(api, finished_run):
    response = api.post(
        "/api/deployments/", {"run": finished_run.pk, "max_macs": 1000}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["max_macs"][0].startswith("max_macs=1000 is below the smallest network")


def test_deploying_needs_a_finished_run(api, alice):
    run = make_run(alice, Status.RUNNING)
    response = api.post("/api/deployments/", {"run": run.pk}, format="json")
    assert response.status_code == 400
    assert response.json() == {
        "run": [
            f"run {run.pk} has no accuracy table yet (status running); deploy from a succeeded run"
        ]
    }


def test_user_cannot_deploy_another_users_run(bob, finished_run):
    response = client_for(bob).post("/api/deployments/", {"run": finished_run.pk}, format="json")
    assert response.status_code == 400
    assert response.json() == {"run": [f"run {finished_run.pk} not found"]}


def test_run_must_be_an_id(api):
    response = api.post("/api/deployments/", {"run": "first"}, format="json")
    assert response.json() == {"run": ["expected a run id (an integer), got str"]}


def deployment_of(run, **fields) -> Deployment:
    fields.setdefault("formats", ["pt", "pt2", "onnx"])
    return Deployment.objects.create(run=run, choices=run.path, **fields)


def test_list_shows_only_my_deployments(api, alice, bob):
    mine = deployment_of(make_finished_run(alice))
    deployment_of(make_finished_run(bob))
    body = api.get("/api/deployments/").json()
    assert [d["id"] for d in body["results"]] == [mine.pk]


def test_user_cannot_see_another_users_deployment(bob, finished_run):
    deployment = deployment_of(finished_run, status=Status.SUCCEEDED)
    client = client_for(bob)
    for url in [
        f"/api/deployments/{deployment.pk}/",
        f"/api/deployments/{deployment.pk}/download/pt/",
    ]:
        response = client.get(url)
        assert response.status_code == 404
        assert response.json() == {"error": f"deployment {deployment.pk} not found"}


def test_download_waits_for_the_build(api, finished_run):
    deployment = deployment_of(finished_run, status=Status.RUNNING)
    response = api.get(f"/api/deployments/{deployment.pk}/download/pt/")
    assert response.status_code == 409
    assert response.json() == {
        "error": f"deployment {deployment.pk} is running; its files are ready once it has succeeded"
    }


def test_unknown_download_format_lists_the_allowed_ones(api, finished_run):
    deployment = deployment_of(finished_run, status=Status.SUCCEEDED)
    response = api.get(f"/api/deployments/{deployment.pk}/download/zip/")
    assert response.status_code == 404
    assert response.json() == {"error": 'unknown format "zip"; allowed: pt, pt2, onnx, torchscript'}


def test_download_is_streamed_with_its_file_name(api, finished_run, settings):
    deployment = deployment_of(finished_run, status=Status.SUCCEEDED, formats=["pt"])
    deployment.out_dir.mkdir(parents=True)
    path = deployment.out_dir / "model.pt"
    path.write_bytes(b"\x80weights" * 1000)
    Artifact.record(path, "pt", deployment=deployment)
    response = api.get(f"/api/deployments/{deployment.pk}/download/pt/")
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Content-Disposition"] == (
        f'attachment; filename="ponas-deployment-{deployment.pk}.pt"'
    )
    assert b"".join(response.streaming_content) == b"\x80weights" * 1000
    body = api.get(f"/api/deployments/{deployment.pk}/").json()
    assert body["downloads"] == {
        "pt": f"http://testserver/api/deployments/{deployment.pk}/download/pt/"
    }
    response = api.get(f"/api/deployments/{deployment.pk}/download/onnx/")
    assert response.status_code == 404
    assert response.json() == {
        "error": f"deployment {deployment.pk} was not exported as onnx (formats: pt)"
    }
