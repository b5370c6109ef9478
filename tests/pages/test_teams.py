"""Teams on the dashboard: alice's runs list holds her team's runs (with the team and who
started them), a member opens a team run without the buttons only its owner and the team's
admins have, the new-search form shares a run with a team of hers, and an admin makes a team
with its members in the admin."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from tests.pages.test_pages import TINY, field_errors, form_data, post
from tests.web.helpers import make_finished_run, make_run, make_team
from tests.web.test_security import built_deployment
from webapp.runs.models import Membership, SearchRun, Status, Team

pytestmark = pytest.mark.django_db


@pytest.fixture
def carol(django_user_model):
    return django_user_model.objects.create_user("carol", password="carol-password-1")


@pytest.fixture
def vision(alice, bob):
    """Alice and bob share their searches in team vision."""
    return make_team("vision", members=[alice, bob])


def test_runs_list_shows_the_team_runs_with_their_team_and_who_started_them(
    browser, alice, bob, carol, vision
):
    make_run(alice, name="alice own search")
    make_run(bob, name="bob shared search", team=vision)
    make_run(bob, name="bob private search")
    make_run(carol, name="carol search in speech", team=make_team("speech", members=[carol]))
    page = browser.get("/")
    html = page.content.decode()
    assert "alice own search" in html
    assert "bob shared search" in html
    assert "team vision</span> · by bob" in html
    assert "bob private search" not in html
    assert "carol search in speech" not in html
    assert dict((v, n) for v, _, n in page.context["tabs"])[""] == 2  # "All 2"


def test_deployments_list_shows_the_builds_of_the_team_runs(browser, bob, vision):
    run = make_finished_run(bob)
    SearchRun.objects.filter(pk=run.pk).update(team=vision)
    deployment = built_deployment(run)
    html = browser.get("/deployments/").content.decode()
    assert f'href="/deployments/{deployment.pk}/"' in html
    assert browser.get(f"/deployments/{deployment.pk}/").status_code == 200


def test_a_member_opens_a_team_run_without_the_owners_buttons(browser, alice, bob, vision):
    run = make_run(bob, Status.FAILED, team=vision, error="out of memory")
    html = browser.get(f"/runs/{run.pk}/").content.decode()
    assert "started by bob" in html
    assert "shared with team <b data-team>vision</b>" in html
    assert 'data-action="resume"' not in html
    assert 'data-action="delete"' not in html
    # the team's admin has them
    Membership.objects.filter(user=alice).update(role=Membership.Role.ADMIN)
    html = browser.get(f"/runs/{run.pk}/").content.decode()
    assert 'data-action="resume"' in html
    assert 'data-action="delete"' in html


def test_a_team_run_is_404_for_who_is_not_in_the_team(browser, carol):
    run = make_finished_run(carol)
    SearchRun.objects.filter(pk=run.pk).update(team=make_team("speech", members=[carol]))
    deployment = built_deployment(run)
    assert browser.get(f"/runs/{run.pk}/").status_code == 404
    assert browser.get(f"/deployments/{deployment.pk}/").status_code == 404


def test_a_member_starts_a_search_shared_with_their_team(browser, alice, vision):
    html = browser.get("/runs/new/").content.decode()
    assert '<option value="vision">vision</option>' in html
    response = post(browser, "/runs/new/", form_data(name="shared", team="vision", **TINY))
    run = SearchRun.objects.get()
    assert response["Location"] == f"/runs/{run.pk}/"
    assert (run.owner, run.team) == (alice, vision)


def test_the_new_search_form_offers_no_team_to_who_is_in_none(browser):
    html = browser.get("/runs/new/").content.decode()
    assert 'name="team"' not in html
    post(browser, "/runs/new/", form_data(name="mine", **TINY))
    assert SearchRun.objects.get().team is None


def test_a_team_the_user_is_not_in_is_refused_next_to_the_field(browser, carol, vision):
    make_team("speech", members=[carol])
    response = post(browser, "/runs/new/", form_data(name="forged", team="speech", **TINY))
    assert field_errors(response, "team") == [
        'you are not a member of a team named "speech"; your teams: vision'
    ]
    assert "you are not a member of a team named &quot;speech&quot;" in response.content.decode()
    assert not SearchRun.objects.exists()


def test_an_admin_creates_a_team_with_its_members_in_the_admin(alice, bob, django_user_model):
    root = django_user_model.objects.create_superuser("root", password="root-password-1")
    admin = Client()
    admin.force_login(root)
    page = admin.get("/admin/runs/team/add/").content.decode()
    assert re.search(r'id="memberships-heading" class="inline-heading">\s*Members\s*<', page)
    response = admin.post(
        "/admin/runs/team/add/",
        {
            "name": "vision",
            "memberships-TOTAL_FORMS": "2",
            "memberships-INITIAL_FORMS": "0",
            "memberships-MIN_NUM_FORMS": "0",
            "memberships-MAX_NUM_FORMS": "1000",
            "memberships-0-user": alice.pk,
            "memberships-0-role": "admin",
            "memberships-1-user": bob.pk,
            "memberships-1-role": "member",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    team = Team.objects.get(name="vision")
    assert sorted(team.memberships.values_list("user__username", "role")) == [
        ("alice", "admin"),
        ("bob", "member"),
    ]
    assert "vision" in admin.get("/admin/runs/team/").content.decode()
