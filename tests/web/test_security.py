"""Other users, anonymous visitors, CSRF and the artifact store: gaps the API and page tests
do not already cover."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from rest_framework.test import APIClient

from tests.web.helpers import client_for, make_finished_run
from webapp.runs.models import Artifact, Deployment, SearchRun, Status

pytestmark = pytest.mark.django_db


def built_deployment(run, name: str = "model.pt") -> Deployment:
    deployment = Deployment.objects.create(
        run=run, choices=run.path, formats=["pt"], status=Status.SUCCEEDED
    )
    deployment.out_dir.mkdir(parents=True)
    path = deployment.out_dir / name
    path.write_bytes(b"weights")
    Artifact.record(path, "pt", deployment=deployment)
    return deployment


# ---- other users --------------------------------------------------------------------------


def test_user_b_gets_404_for_everything_of_user_a_by_id(alice, bob):
    run = make_finished_run(alice)
    deployment = built_deployment(run)
    client = client_for(bob)
    for url in [
        f"/api/runs/{run.pk}/",
        f"/api/runs/{run.pk}/table/",
        f"/api/runs/{run.pk}/preview/",
        f"/api/runs/{run.pk}/pareto/",
        f"/api/deployments/{deployment.pk}/",
        f"/api/deployments/{deployment.pk}/download/pt/",
    ]:
        assert client.get(url).status_code == 404, url
    # and the owner gets them all
    owner = client_for(alice)
    assert owner.get(f"/api/deployments/{deployment.pk}/download/pt/").status_code == 200


def test_guessing_ids_tells_nothing(alice, bob):
    """Another user's id and an id that does not exist get the same answers."""
    run = make_finished_run(alice)
    deployment = built_deployment(run)
    missing_run, missing_deployment = run.pk + 1000, deployment.pk + 1000
    client = client_for(bob)

    def answer(url, method="get", **kw):
        response = getattr(client, method)(url, **kw)
        return response.status_code, re.sub(r"\d+", "N", response.content.decode())

    for theirs, missing in [
        (f"/api/runs/{run.pk}/", f"/api/runs/{missing_run}/"),
        (f"/api/runs/{run.pk}/table/", f"/api/runs/{missing_run}/table/"),
        (
            f"/api/deployments/{deployment.pk}/download/pt/",
            f"/api/deployments/{missing_deployment}/download/pt/",
        ),
        (f"/api/deployments/?run={run.pk}", f"/api/deployments/?run={missing_run}"),
    ]:
        assert answer(theirs) == answer(missing), theirs
    assert answer("/api/deployments/", "post", data={"run": run.pk}, format="json") == answer(
        "/api/deployments/", "post", data={"run": missing_run}, format="json"
    )
    # bob's own listing never shows alice's objects
    assert client.get("/api/runs/").json()["count"] == 0
    assert client.get("/api/deployments/").json()["count"] == 0


def test_user_b_cannot_open_user_a_pages(alice, bob):
    run = make_finished_run(alice)
    deployment = built_deployment(run)
    browser = Client()
    browser.force_login(bob)
    assert browser.get(f"/runs/{run.pk}/").status_code == 404
    assert browser.get(f"/deployments/{deployment.pk}/").status_code == 404


# ---- anonymous ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("get", "/api/runs/"),
        ("post", "/api/runs/"),
        ("get", "/api/runs/1/"),
        ("delete", "/api/runs/1/"),
        ("post", "/api/runs/1/cancel/"),
        ("post", "/api/runs/1/resume/"),
        ("get", "/api/runs/1/table/"),
        ("get", "/api/runs/1/preview/"),
        ("get", "/api/runs/1/pareto/"),
        ("get", "/api/deployments/"),
        ("post", "/api/deployments/"),
        ("get", "/api/deployments/1/"),
        ("get", "/api/deployments/1/download/pt/"),
    ],
)
def test_anonymous_api_requests_get_401(alice, method, url):
    make_finished_run(alice)
    response = getattr(APIClient(), method)(url)
    assert response.status_code == 401
    assert response.json() == {"error": "Authentication credentials were not provided."}


def test_a_bad_token_gets_401():
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-token")
    assert client.get("/api/runs/").status_code == 401


# ---- CSRF ---------------------------------------------------------------------------------


def token_of(client: Client, url: str) -> str:
    page = client.get(url)
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode())[1]


def test_forms_refuse_posts_without_the_csrf_token(alice):
    browser = Client(enforce_csrf_checks=True)
    response = browser.post(
        "/accounts/login/", {"username": "alice", "password": "alice-password-1"}
    )
    assert response.status_code == 403
    browser.force_login(alice)
    response = browser.post("/runs/new/", {"preset": "digits", "name": "forged"})
    assert response.status_code == 403
    assert not SearchRun.objects.exists()
    assert browser.post("/accounts/logout/").status_code == 403
    assert browser.get("/").status_code == 200  # still signed in
    # with the page's token the same forms work
    assert browser.post("/accounts/logout/", {"csrfmiddlewaretoken": token_of(browser, "/")})[
        "Location"
    ].startswith("/accounts/login/")


def test_session_api_calls_need_the_csrf_token(alice):
    """The pages call the API with the session cookie: a forged cross-site POST is refused."""
    run = make_finished_run(alice)
    SearchRun.objects.filter(pk=run.pk).update(status=Status.RUNNING)
    browser = APIClient(enforce_csrf_checks=True)
    browser.force_login(alice)  # a session, not force_authenticate: CSRF applies
    assert browser.get(f"/api/runs/{run.pk}/").status_code == 200
    response = browser.post(f"/api/runs/{run.pk}/cancel/")
    assert response.status_code == 403
    assert "CSRF" in response.json()["error"]
    assert not SearchRun.objects.get(pk=run.pk).cancel_requested
    token = token_of(browser, "/runs/new/")
    response = browser.post(f"/api/runs/{run.pk}/cancel/", HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 202


# ---- the artifact store -------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["../../etc/passwd", "/etc/passwd", "runs/../../secret.txt", "runs/1/../../../x"]
)
def test_downloads_never_leave_the_artifact_store(alice, settings, tmp_path, name):
    secret = tmp_path / "secret.txt"  # next to MEDIA_ROOT, outside it
    secret.write_text("do not serve")
    run = make_finished_run(alice)
    deployment = built_deployment(run)
    Artifact.objects.filter(deployment=deployment).update(file=name)
    api = client_for(alice)
    response = api.get(f"/api/deployments/{deployment.pk}/download/pt/")
    assert response.status_code == 404
    assert response.json() == {"error": f"deployment {deployment.pk}'s pt file is missing"}
    browser = Client()
    browser.force_login(alice)
    Artifact.objects.create(deployment=deployment, kind="model_card", file=f"runs/../{name}")
    page = browser.get(f"/deployments/{deployment.pk}/")
    assert page.status_code == 200
    assert b"do not serve" not in page.content


def test_a_link_out_of_the_artifact_store_is_not_followed(alice, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("do not serve")
    run = make_finished_run(alice)
    deployment = built_deployment(run, "model.pt")
    link = deployment.out_dir / "model.pt"
    link.unlink()
    link.symlink_to(secret)
    response = client_for(alice).get(f"/api/deployments/{deployment.pk}/download/pt/")
    assert response.status_code == 404
