"""Teams: search once, deploy to every device. Alice shares a run with team "vision"; bob (a
member) sees it and deploys from it, carol (the team's admin) may also cancel, resume and
delete it, and dave (in no team of hers) gets 404 for all of it, as for a run that does not
exist."""

from __future__ import annotations

import re

import pytest

from tests.web.helpers import client_for, make_finished_run, make_run, make_team
from tests.web.test_api_profiles import measured_profile
from tests.web.test_security import built_deployment
from webapp.runs.models import Deployment, Membership, SearchRun, Status

pytestmark = pytest.mark.django_db


@pytest.fixture
def carol(django_user_model):
    return django_user_model.objects.create_user("carol", password="carol-password-1")


@pytest.fixture
def dave(django_user_model):
    return django_user_model.objects.create_user("dave", password="dave-password-1")


@pytest.fixture
def vision(alice, bob, carol):
    """Alice and bob are members of team vision, carol is its admin."""
    return make_team("vision", members=[alice, bob], admins=[carol])


@pytest.fixture
def team_run(alice, vision) -> SearchRun:
    """A succeeded run of alice's, shared with team vision."""
    run = make_finished_run(alice)
    SearchRun.objects.filter(pk=run.pk).update(team=vision)
    run.refresh_from_db()
    return run


def everything_under(run: SearchRun, deployment: Deployment) -> list[str]:
    """Every read of a run and of what belongs to it."""
    return [
        f"/api/runs/{run.pk}/",
        f"/api/runs/{run.pk}/table/",
        f"/api/runs/{run.pk}/table/?format=csv",
        f"/api/runs/{run.pk}/preview/?max_macs=20M",
        f"/api/runs/{run.pk}/pareto/",
        f"/api/runs/{run.pk}/profiles/",
        f"/api/deployments/{deployment.pk}/",
        f"/api/deployments/{deployment.pk}/download/pt/",
        f"/api/deployments/?run={run.pk}",
    ]


# ---- members ------------------------------------------------------------------------------


def test_a_team_member_sees_the_team_run_and_everything_under_it(bob, team_run):
    deployment = built_deployment(team_run)
    member = client_for(bob)
    for url in everything_under(team_run, deployment):
        assert member.get(url).status_code == 200, url
    runs = member.get("/api/runs/").json()
    assert [(r["id"], r["owner"], r["team"]) for r in runs["results"]] == [
        (team_run.pk, "alice", "vision")
    ]
    assert member.get("/api/runs/?team=vision").json()["count"] == 1
    assert member.get("/api/runs/?team=speech").json()["count"] == 0
    assert member.get("/api/deployments/").json()["results"][0]["id"] == deployment.pk
    download = member.get(f"/api/deployments/{deployment.pk}/download/pt/")
    assert b"".join(download.streaming_content) == b"weights"


def test_a_run_of_a_team_of_several_is_listed_once(alice, bob, carol, team_run):
    """Three memberships, one run: neither the owner nor a member sees it three times."""
    for user in (alice, bob, carol):
        assert client_for(user).get("/api/runs/").json()["count"] == 1, user


def test_a_member_deploys_from_a_team_run_and_the_whole_team_sees_the_build(
    alice, bob, carol, dave, team_run, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        response = client_for(bob).post(
            "/api/deployments/", {"run": team_run.pk, "max_macs": "20M"}, format="json"
        )
    assert response.status_code == 201, response.json()
    assert len(callbacks) == 1  # the build task
    body = response.json()
    assert (body["run"], body["requested_by"], body["status"]) == (team_run.pk, "bob", "queued")
    for user in (alice, bob, carol):
        listed = client_for(user).get("/api/deployments/").json()["results"]
        assert [d["id"] for d in listed] == [body["id"]], user
    assert client_for(dave).get(f"/api/deployments/{body['id']}/").status_code == 404


def test_a_member_measures_a_device_profile_and_deploys_in_its_latency(bob, dave, team_run):
    member = client_for(bob)
    response = member.post(f"/api/runs/{team_run.pk}/profiles/", {"queue": "gpu"}, format="json")
    assert response.status_code == 202, response.json()
    assert response.json()["requested_by"] == "bob"
    profile = measured_profile(team_run)  # what the worker stores once it has timed the blocks
    response = member.post(
        "/api/deployments/",
        {"run": team_run.pk, "profile": profile.pk, "max_latency_ms": 1000},
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert response.json()["profile"] == profile.pk
    preview = client_for(dave).get(f"/api/runs/{team_run.pk}/preview/?profile={profile.pk}")
    assert preview.status_code == 400  # the profile's run is not dave's to see
    assert preview.json() == {
        "profile": [f"device profile {profile.pk} not found (or not measured yet)"]
    }


@pytest.mark.parametrize(
    ("method", "suffix", "verb"),
    [("post", "cancel/", "cancel"), ("post", "resume/", "resume"), ("delete", "", "delete")],
)
def test_a_member_may_not_cancel_resume_or_delete_a_team_run(
    alice, bob, vision, method, suffix, verb
):
    status = {"cancel": Status.RUNNING, "resume": Status.FAILED, "delete": Status.SUCCEEDED}[verb]
    run = make_run(alice, status, team=vision)
    response = getattr(client_for(bob), method)(f"/api/runs/{run.pk}/{suffix}")
    assert response.status_code == 403
    assert response.json() == {
        "error": f'run {run.pk} belongs to alice and is shared with team "vision": only its '
        f"owner or an admin of the team may {verb} it"
    }
    run.refresh_from_db()
    assert (run.status, run.cancel_requested) == (status, False)


def test_the_team_admin_cancels_resumes_and_deletes_a_team_run(alice, carol, vision):
    admin = client_for(carol)
    run = make_run(alice, Status.RUNNING, team=vision)
    assert admin.post(f"/api/runs/{run.pk}/cancel/").status_code == 202
    assert SearchRun.objects.get(pk=run.pk).cancel_requested
    SearchRun.objects.filter(pk=run.pk).update(status=Status.CANCELLED)
    response = admin.post(f"/api/runs/{run.pk}/resume/")
    assert response.status_code == 202, response.json()
    assert response.json()["status"] == "queued"
    SearchRun.objects.filter(pk=run.pk).update(status=Status.FAILED)
    assert admin.delete(f"/api/runs/{run.pk}/").status_code == 204
    assert not SearchRun.objects.filter(pk=run.pk).exists()


def test_a_member_who_leaves_the_team_no_longer_sees_its_runs(bob, team_run):
    member = client_for(bob)
    assert member.get(f"/api/runs/{team_run.pk}/").status_code == 200
    Membership.objects.filter(user=bob).delete()
    response = member.get(f"/api/runs/{team_run.pk}/")
    assert response.status_code == 404
    assert response.json() == {"error": f"run {team_run.pk} not found"}


def test_a_members_builds_count_in_their_own_quota_not_the_owners(alice, bob, team_run, settings):
    settings.PONAS_MAX_ACTIVE_DEPLOYMENTS = 1
    Deployment.objects.create(run=team_run, requested_by=alice, status=Status.RUNNING)
    member = client_for(bob)
    first = member.post("/api/deployments/", {"run": team_run.pk}, format="json")
    assert first.status_code == 201, first.json()
    second = member.post("/api/deployments/", {"run": team_run.pk}, format="json")
    assert second.status_code == 429
    assert second.json() == {
        "error": "you have 1 deployment building, the most this server allows one user (1); "
        "wait for one to finish or cancel one"
    }


# ---- everyone else ------------------------------------------------------------------------


def test_a_non_member_gets_404_for_a_team_run_and_everything_under_it(dave, team_run):
    deployment = built_deployment(team_run)
    stranger = client_for(dave)
    for url in everything_under(team_run, deployment)[:-1]:
        assert stranger.get(url).status_code == 404, url
    assert stranger.get(f"/api/deployments/?run={team_run.pk}").status_code == 400
    for method, suffix in [("post", "cancel/"), ("post", "resume/"), ("delete", "")]:
        response = getattr(stranger, method)(f"/api/runs/{team_run.pk}/{suffix}")
        assert response.status_code == 404, suffix
    response = stranger.post("/api/deployments/", {"run": team_run.pk}, format="json")
    assert response.json() == {"run": [f"run {team_run.pk} not found"]}
    assert stranger.get("/api/runs/").json()["count"] == 0
    assert stranger.get("/api/deployments/").json()["count"] == 0
    assert SearchRun.objects.filter(pk=team_run.pk, status=Status.SUCCEEDED).exists()


def test_a_team_run_and_a_missing_one_answer_a_non_member_alike(dave, team_run):
    deployment = built_deployment(team_run)
    stranger = client_for(dave)

    def answer(url):
        response = stranger.get(url)
        return response.status_code, re.sub(r"\d+", "N", response.content.decode())

    missing_run, missing_deployment = team_run.pk + 1000, deployment.pk + 1000
    for theirs, missing in [
        (f"/api/runs/{team_run.pk}/", f"/api/runs/{missing_run}/"),
        (f"/api/runs/{team_run.pk}/pareto/", f"/api/runs/{missing_run}/pareto/"),
        (f"/api/deployments/{deployment.pk}/", f"/api/deployments/{missing_deployment}/"),
        (f"/api/deployments/?run={team_run.pk}", f"/api/deployments/?run={missing_run}"),
    ]:
        assert answer(theirs) == answer(missing), theirs


# ---- starting a team run ------------------------------------------------------------------


def test_a_member_starts_a_run_shared_with_their_team(
    alice, bob, vision, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        response = client_for(bob).post(
            "/api/runs/", {"preset": "digits", "team": "vision"}, format="json"
        )
    assert response.status_code == 201, response.json()
    assert len(callbacks) == 1
    body = response.json()
    assert (body["owner"], body["team"]) == ("bob", "vision")
    assert SearchRun.objects.get(pk=body["id"]).team == vision
    # alice, a member, sees it; without a team a run stays private
    assert client_for(alice).get(f"/api/runs/{body['id']}/").json()["team"] == "vision"
    private = client_for(bob).post("/api/runs/", {"preset": "digits"}, format="json").json()
    assert private["team"] is None
    assert client_for(alice).get(f"/api/runs/{private['id']}/").status_code == 404


@pytest.mark.parametrize(
    ("team", "message"),
    [
        ("vision", 'you are not a member of a team named "vision"; your teams: speech'),
        ("nope", 'you are not a member of a team named "nope"; your teams: speech'),
        (7, "expected a team's name (a string), got int"),
    ],
)
def test_choosing_a_team_you_do_not_belong_to_is_refused(dave, vision, team, message):
    make_team("speech", members=[dave])
    response = client_for(dave).post(
        "/api/runs/", {"preset": "digits", "team": team}, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {"team": [message]}
    assert not SearchRun.objects.exists()


def test_a_user_in_no_team_is_told_so(dave, vision):
    response = client_for(dave).post(
        "/api/runs/", {"preset": "digits", "team": "vision"}, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {
        "team": ['you are not a member of a team named "vision"; you are a member of no team']
    }
