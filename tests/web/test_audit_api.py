"""The audits API: start an audit of a run's table (validated, priced, within the quota), list,
retrieve, cancel; who sees them; the watchdog's care of an audit whose worker vanished."""

from __future__ import annotations

import pytest

from ponas.audit import Recipe, audit_plan
from tests.web.helpers import client_for, digits_table, make_finished_run, make_run, make_team
from webapp.runs.models import Audit, AuditNetwork, Lease, Status

pytestmark = pytest.mark.django_db

BUDGETS = ["1.4M", "1.6M", "1.9M"]
BODY = {"budgets": BUDGETS, "networks": 3, "epochs": 1}


def audits_url(run, rest: str = "") -> str:
    return f"/api/runs/{run.pk}/audits/{rest}"


def test_user_audits_a_finished_run(api, finished_run, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        response = api.post(audits_url(finished_run), BODY, format="json")
    assert response.status_code == 202, response.json()
    body = response.json()
    _, todo = audit_plan(digits_table(), [1.4e6, 1.6e6, 1.9e6], 3, Recipe(epochs=1))
    assert body["status"] == "queued"
    assert body["budgets"] == [1.4e6, 1.6e6, 1.9e6]
    assert (body["networks"], body["epochs"], body["seeds"]) == (3, 1, 1)
    assert body["total"] == len(todo) and body["trained"] == 0 and body["progress"] == 0
    assert body["requested_by"] == "alice"
    # the drawn networks are recorded: per budget 3 of the cost-matched ones, and the deployed
    assert [len(p["pool"]) for p in body["pools"]] == [3, 3, 3]
    for pool, budget in zip(body["pools"], body["budgets"], strict=True):
        assert all(0.9 * budget <= m <= budget for m in pool["macs"])
        assert len(pool["deployed"]) == 6
    assert body["estimate"]["trainings"] == len(todo)
    assert f"{len(todo)} trainings" in body["estimate"]["text"]
    assert len(callbacks) == len(todo)  # one task per training
    assert AuditNetwork.objects.filter(audit_id=body["id"]).count() == len(todo)
    listed = api.get(audits_url(finished_run)).json()
    assert [a["id"] for a in listed["results"]] == [body["id"]]
    assert api.get(audits_url(finished_run, f"{body['id']}/")).json()["pools"] == body["pools"]


def test_estimate_prices_an_audit_and_starts_nothing(api, finished_run):
    one = api.post(audits_url(finished_run, "estimate/"), BODY, format="json")
    assert one.status_code == 200, one.json()
    two = api.post(audits_url(finished_run, "estimate/"), {**BODY, "seeds": 2}, format="json")
    one, two = one.json(), two.json()
    assert two["trainings"] == 2 * one["trainings"]
    assert one["more_seed"]["trainings"] == one["trainings"]
    assert one["more_epoch"]["images"] == one["trainings"] * one["training_images"]
    assert one["images"] == one["trainings"] * 1 * one["training_images"]
    assert "one more seed adds" in one["text"]
    assert [len(p["pool"]) for p in one["pools"]] == [3, 3, 3]
    assert not Audit.objects.exists()


def test_estimate_uses_the_speed_of_earlier_audit_trainings(api, finished_run):
    earlier = api.post(audits_url(finished_run), BODY, format="json").json()
    AuditNetwork.objects.filter(audit_id=earlier["id"]).update(seconds=4.0, accuracy=0.5)
    answer = api.post(audits_url(finished_run, "estimate/"), {**BODY, "epochs": 2}, format="json")
    estimate = answer.json()
    assert estimate["seconds_per_epoch"] == 4.0  # 4 s for 1 epoch
    assert estimate["worker_seconds"] == estimate["trainings"] * 2 * 4.0
    assert estimate["more_epoch"]["worker_seconds"] == estimate["trainings"] * 4.0
    assert "earlier audits" in estimate["text"]


@pytest.mark.parametrize(
    ("payload", "field", "message"),
    [
        (
            {"budgets": "1.4M"},
            "budgets",
            'expected a list of MACs budgets, e.g. ["1.2M", "2M"], got str',
        ),
        ({"budgets": []}, "budgets", "give at least one MACs budget, e.g. 1.2M"),
        (
            {"budgets": ["1.4M", "lots"]},
            "budgets",
            "budget 2: invalid budget 'lots': expected a positive number with an optional K, M "
            "or G suffix (e.g. 300M, 5.1m, 2e6, 20)",
        ),
        ({"budgets": ["1.4M", 1.4e6]}, "budgets", "budget 1400000.0 is given twice"),
        (
            {"budgets": ["0.4M"]},
            "budgets",
            "budget 4e+05 MACs is below the smallest network of this space (5.11e+05 MACs)",
        ),
        (
            {"budgets": [f"{1 + i / 10}M" for i in range(9)]},
            "budgets",
            "budgets=9 is above this server's limit of 8",
        ),
        ({"networks": 51}, "networks", "networks=51 is above this server's limit of 50"),
        ({"networks": 2}, "networks", "Ensure this value is greater than or equal to 3."),
        ({"epochs": 0}, "epochs", "Ensure this value is greater than or equal to 1."),
        ({"epochs": 101}, "epochs", "epochs=101 is above this server's limit of 100"),
        ({"seeds": 6}, "seeds", "seeds=6 is above this server's limit of 5"),
        ({"seeds": "two"}, "seeds", "A valid integer is required."),
    ],
)
def test_bad_audit_gets_a_one_line_error_naming_the_field(
    api, finished_run, payload, field, message
):
    response = api.post(audits_url(finished_run), {**BODY, **payload}, format="json")
    assert response.status_code == 400
    assert response.json() == {field: [message]}
    assert not Audit.objects.exists()


def test_an_audit_training_more_networks_than_the_server_allows_is_refused(
    api, finished_run, settings
):
    settings.PONAS_AUDIT_LIMITS = {**settings.PONAS_AUDIT_LIMITS, "trainings": 20}
    response = api.post(audits_url(finished_run), {**BODY, "networks": 10}, format="json")
    assert response.status_code == 400
    (message,) = response.json()["networks"]
    assert message.startswith("this audit would train 3")
    assert message.endswith(
        "this server trains at most 20 per audit (ask for fewer budgets, networks or seeds)"
    )


def test_user_cannot_audit_or_read_the_audits_of_another_users_run(api, bob):
    theirs = make_finished_run(bob)
    client_for(bob).post(audits_url(theirs), BODY, format="json")
    audit = Audit.objects.get()
    for response in (
        api.post(audits_url(theirs), BODY, format="json"),
        api.post(audits_url(theirs, "estimate/"), BODY, format="json"),
        api.get(audits_url(theirs)),
        api.get(audits_url(theirs, f"{audit.pk}/")),
        api.post(audits_url(theirs, f"{audit.pk}/cancel/")),
    ):
        assert response.status_code == 404
        assert response.json() == {"error": f"run {theirs.pk} not found"}
    assert Audit.objects.get().status == Status.QUEUED


def test_an_audit_of_another_run_is_not_found_under_this_one(api, finished_run, alice):
    other = make_finished_run(alice, seed=1)
    audit = api.post(audits_url(other), BODY, format="json").json()
    response = api.get(audits_url(finished_run, f"{audit['id']}/"))
    assert response.status_code == 404
    assert response.json() == {"error": f"audit {audit['id']} not found"}


def test_a_run_without_a_table_cannot_be_audited_yet(api, alice):
    run = make_run(alice, Status.RUNNING)
    response = api.post(audits_url(run), BODY, format="json")
    assert response.status_code == 409
    assert response.json() == {
        "error": f"run {run.pk} has no accuracy table yet (status running); audit a succeeded run"
    }


def test_user_cancels_an_audit_once(api, finished_run):
    audit = api.post(audits_url(finished_run), BODY, format="json").json()
    response = api.post(audits_url(finished_run, f"{audit['id']}/cancel/"))
    assert response.status_code == 202
    assert response.json()["status"] == "cancelled"
    assert response.json()["finished"] is not None
    again = api.post(audits_url(finished_run, f"{audit['id']}/cancel/"))
    assert again.status_code == 409
    assert again.json() == {
        "error": f"audit {audit['id']} is cancelled; only queued or running audits can be cancelled"
    }


def test_audits_count_in_the_quota_of_who_asked(api, finished_run, settings):
    settings.PONAS_MAX_ACTIVE_AUDITS = 1
    assert api.post(audits_url(finished_run), BODY, format="json").status_code == 202
    response = api.post(audits_url(finished_run), BODY, format="json")
    assert response.status_code == 429
    assert response.json() == {
        "error": "you have 1 audit queued or running, the most this server allows one user (1); "
        "wait for one to finish or cancel one"
    }
    Audit.objects.update(status=Status.SUCCEEDED)  # a finished audit no longer counts
    assert api.post(audits_url(finished_run), BODY, format="json").status_code == 202


def test_team_members_see_and_start_audits_of_a_team_run(alice, bob, django_user_model):
    carol = django_user_model.objects.create_user("carol", password="carol-password-1")
    team = make_team("vision", members=[alice, bob])
    run = make_finished_run(carol)
    run.team = team
    run.save()
    mine = client_for(alice).post(audits_url(run), BODY, format="json")
    assert mine.status_code == 202
    listed = client_for(bob).get(audits_url(run)).json()["results"]
    assert [(a["id"], a["requested_by"]) for a in listed] == [(mine.json()["id"], "alice")]
    # bob sees it but did not ask for it and does not manage the run
    response = client_for(bob).post(audits_url(run, f"{mine.json()['id']}/cancel/"))
    assert response.status_code == 403
    assert response.json() == {
        "error": f"audit {mine.json()['id']} was asked for by alice: only they, the run's owner "
        "or an admin of its team may cancel it"
    }
    # the run's owner may
    assert (
        client_for(carol).post(audits_url(run, f"{mine.json()['id']}/cancel/")).status_code == 202
    )


def test_a_run_being_audited_is_not_deleted(api, finished_run):
    api.post(audits_url(finished_run), BODY, format="json")
    response = api.delete(f"/api/runs/{finished_run.pk}/")
    assert response.status_code == 409
    assert "has an audit queued" in response.json()["error"]


def _hold(audit: Audit, seconds_ago: float) -> None:
    """A training lease of ``audit`` held by a worker that vanished ``seconds_ago``."""
    from datetime import timedelta

    from django.utils import timezone

    renewed = timezone.now() - timedelta(seconds=seconds_ago)
    audit.refresh_from_db()
    network = audit.trainings.first()
    Lease.objects.update_or_create(
        key=f"audit {audit.pk} network {network.pk}",
        defaults={
            "audit": audit,
            "attempt": audit.attempt,  # of the audit's current attempt
            "worker": "w1@gone",
            "host": "gone-host",
            "pid": 1,
            "task_id": "task-of-a-gone-worker",
            "taken": renewed,
            "renewed": renewed,
        },
    )


def test_watchdog_resends_an_audit_whose_worker_vanished_then_fails_it(
    api, finished_run, settings, django_capture_on_commit_callbacks
):
    from webapp.runs.watchdog import reap_stuck_audits

    settings.PONAS_AUTO_RESUMES = 1
    body = api.post(audits_url(finished_run), BODY, format="json").json()
    audit = Audit.objects.get(pk=body["id"])
    trained = audit.trainings.all()[1]
    AuditNetwork.objects.filter(pk=trained.pk).update(accuracy=0.5)  # one is done and kept
    Audit.objects.filter(pk=audit.pk).update(status=Status.RUNNING)
    _hold(audit, settings.PONAS_HEARTBEAT_TIMEOUT + 5)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        reaped = reap_stuck_audits()
    assert reaped.requeued == [audit.pk]
    audit.refresh_from_db()
    assert (audit.status, audit.auto_resumes, audit.attempt) == (Status.QUEUED, 1, 2)
    assert len(callbacks) == audit.total - 1  # the trainings still to do, not the stored one
    # a re-sent training starts (running again): the lost lease, of the earlier attempt and
    # still held until a delivery takes it over, does not make the audit lost again
    Audit.objects.filter(pk=audit.pk).update(status=Status.RUNNING)
    assert not reap_stuck_audits()
    # lost again: no automatic resumes left, it fails with the reason
    _hold(audit, settings.PONAS_HEARTBEAT_TIMEOUT + 5)
    assert reap_stuck_audits().failed == [audit.pk]
    audit.refresh_from_db()
    assert audit.status == Status.FAILED
    assert audit.error.startswith("the worker stopped sending heartbeats at ")
    assert "audit again" in audit.error


def test_watchdog_leaves_an_audit_whose_lease_is_renewed(api, finished_run):
    from webapp.runs.watchdog import reap_stuck_audits

    body = api.post(audits_url(finished_run), BODY, format="json").json()
    audit = Audit.objects.get(pk=body["id"])
    Audit.objects.filter(pk=audit.pk).update(status=Status.RUNNING)
    _hold(audit, 1)
    assert not reap_stuck_audits()
    assert Audit.objects.get(pk=audit.pk).status == Status.RUNNING


def test_estimate_uses_the_runs_stage1_speed_before_any_audit(api, finished_run):
    from webapp.runs.models import MetricPoint

    for epoch, speed in ((1, 90.0), (2, 100.0), (3, 110.0)):
        MetricPoint.objects.create(
            run=finished_run, stage="stage1", kind="epoch", step=epoch,
            values={"train_loss": 1.0, "images_per_s": speed},
        )  # fmt: skip
    estimate = api.post(audits_url(finished_run, "estimate/"), BODY, format="json").json()
    assert estimate["seconds_per_epoch"] == estimate["training_images"] / 100.0  # the median
    assert estimate["speed_from"] == "this run's stage-1 training speed (100 images/s)"
    assert estimate["worker_seconds"] == pytest.approx(
        estimate["trainings"] * estimate["training_images"] / 100.0
    )
    assert estimate["wall_seconds"] == estimate["worker_seconds"]  # no live worker: one
