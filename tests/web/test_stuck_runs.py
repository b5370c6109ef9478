"""Stuck runs: a running run whose worker stopped sending heartbeats is re-queued (a new
attempt, continued from its checkpoint by any worker) while it has automatic resumes left,
then marked failed with a reason; it is never left `running`, and resume continues it.
Workers, the periodic task beat sends, and `manage.py reap_stuck_runs` look; a page or an API
read never changes anything."""

from __future__ import annotations

import time
from datetime import UTC, timedelta

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from tasks.progress import RunRecorder, heartbeat
from tasks.watchdog import reap_stuck_work
from tests.web.helpers import hold_lease, make_finished_run, make_run, running_again
from webapp.runs.models import Deployment, SearchRun, Stage, Status
from webapp.runs.services import BUILD_DEPLOYMENT, RUN_SEARCH
from webapp.runs.watchdog import Reaped, reap_stuck_deployments, reap_stuck_runs, stuck_message

pytestmark = pytest.mark.django_db


def running(owner, seconds_ago: float, **fields) -> SearchRun:
    """A running run whose task holds a lease last renewed ``seconds_ago`` by a worker the
    registry does not know (gone)."""
    beat = timezone.now() - timedelta(seconds=seconds_ago)
    run = make_run(
        owner, Status.RUNNING, stage=Stage.STAGE1, started=beat, heartbeat=beat, **fields
    )
    hold_lease(run, seconds_ago)
    return run


def test_a_run_without_heartbeats_is_requeued_as_a_new_attempt(
    api, alice, settings, django_capture_on_commit_callbacks
):
    settings.PONAS_HEARTBEAT_TIMEOUT = 600
    settings.PONAS_AUTO_RESUMES = 2
    stuck = running(alice, 601, worker="w1@gone", queue="default")
    with django_capture_on_commit_callbacks() as callbacks:
        reap_stuck_work()  # what beat sends every PONAS_WATCHDOG_SECONDS
    body = api.get(f"/api/runs/{stuck.pk}/").json()
    assert body["status"] == "queued"
    assert body["auto_resumes"] == 1
    assert body["error"] == "" and body["finished"] is None and body["worker"] == ""
    assert SearchRun.objects.get(pk=stuck.pk).attempt == 2  # the lost attempt's tasks stop
    assert len(callbacks) == 1  # run_search (attempt 2) is sent by name once this commits...
    (send,) = callbacks
    assert send.args == (RUN_SEARCH, (stuck.pk, 2))
    assert send.keywords == {"queue": "default"}  # ...to the run's queue

    # the second loss is re-queued too; the third one has no automatic resume left
    running_again(stuck, 601)
    assert reap_stuck_runs() == Reaped(requeued=[stuck.pk])
    running_again(stuck, 601)
    assert reap_stuck_runs() == Reaped(failed=[stuck.pk])
    run = SearchRun.objects.get(pk=stuck.pk)
    assert (run.status, run.attempt, run.auto_resumes) == (Status.FAILED, 3, 2)
    assert run.error == stuck_message(stuck.heartbeat, 2)
    assert "(it had been re-queued automatically 2 times before)" in run.error

    # a manual resume gives it its automatic resumes back
    assert api.post(f"/api/runs/{stuck.pk}/resume/").status_code == 202
    run.refresh_from_db()
    assert (run.status, run.attempt, run.auto_resumes) == (Status.QUEUED, 4, 0)


def test_a_run_without_heartbeats_is_failed_with_a_reason_and_resumes(
    api, alice, settings, django_capture_on_commit_callbacks
):
    settings.PONAS_HEARTBEAT_TIMEOUT = 600
    settings.PONAS_AUTO_RESUMES = 0
    stuck = running(alice, 601)
    beat = stuck.heartbeat
    assert reap_stuck_runs() == Reaped(failed=[stuck.pk])
    body = api.get(f"/api/runs/{stuck.pk}/").json()
    assert body["status"] == "failed"
    when = beat.astimezone(UTC)
    assert body["error"] == stuck_message(beat)
    assert body["error"].startswith(
        f"the worker stopped sending heartbeats at {when:%Y-%m-%d %H:%M:%S} UTC; "
    )
    assert body["error"].endswith("resume to continue from the last checkpoint")
    assert body["finished"] is not None
    with django_capture_on_commit_callbacks() as callbacks:
        response = api.post(f"/api/runs/{stuck.pk}/resume/")
    assert response.status_code == 202
    assert response.json()["status"] == "queued"
    assert response.json()["error"] == ""
    assert SearchRun.objects.get(pk=stuck.pk).attempt == 2
    assert len(callbacks) == 1  # run_search is sent: it continues from the checkpoints


def test_live_queued_and_finished_runs_are_left_alone(api, alice, bob, settings):
    settings.PONAS_HEARTBEAT_TIMEOUT = 600
    settings.PONAS_AUTO_RESUMES = 0
    live = running(alice, 30)
    queued = make_run(alice, Status.QUEUED)
    done = make_run(alice, Status.SUCCEEDED, heartbeat=timezone.now() - timedelta(days=1))
    others = running(bob, 3600)
    assert reap_stuck_runs() == Reaped(failed=[others.pk])  # every stuck run, anyone's
    body = api.get("/api/runs/").json()
    assert {r["id"]: r["status"] for r in body["results"]} == {
        live.pk: "running",
        queued.pk: "queued",
        done.pk: "succeeded",
    }
    assert SearchRun.objects.get(pk=others.pk).status == Status.FAILED


def test_the_timeout_is_a_setting(alice, settings):
    run = running(alice, 120)
    settings.PONAS_AUTO_RESUMES = 0
    settings.PONAS_HEARTBEAT_TIMEOUT = 600
    assert reap_stuck_runs() == Reaped()
    settings.PONAS_HEARTBEAT_TIMEOUT = 60
    assert reap_stuck_runs() == Reaped(failed=[run.pk])


def test_a_running_run_that_never_beat_is_judged_by_its_start(alice, settings):
    settings.PONAS_HEARTBEAT_TIMEOUT = 60
    settings.PONAS_AUTO_RESUMES = 0
    run = running(alice, 120)
    SearchRun.objects.filter(pk=run.pk).update(heartbeat=None)
    assert reap_stuck_runs() == Reaped(failed=[run.pk])
    assert "the worker stopped sending heartbeats at" in SearchRun.objects.get(pk=run.pk).error


def test_management_command_reaps(alice, settings, capsys):
    settings.PONAS_HEARTBEAT_TIMEOUT = 60
    settings.PONAS_AUTO_RESUMES = 1
    run = running(alice, 120)
    call_command("reap_stuck_runs")
    assert capsys.readouterr().out.strip() == f"re-queued (no heartbeat for 60 s): runs {run.pk}"
    assert SearchRun.objects.get(pk=run.pk).status == Status.QUEUED
    running_again(run, 601)
    call_command("reap_stuck_runs")
    assert capsys.readouterr().out.strip() == (
        f"marked failed (no heartbeat for 60 s, no automatic resumes left): runs {run.pk}"
    )
    assert SearchRun.objects.get(pk=run.pk).status == Status.FAILED
    call_command("reap_stuck_runs")
    assert capsys.readouterr().out.strip() == "nothing stuck (heartbeat timeout 60 s)"


def test_the_run_page_says_when_a_run_was_reaped(alice, settings):
    settings.PONAS_HEARTBEAT_TIMEOUT = 60
    settings.PONAS_AUTO_RESUMES = 1
    run = running(alice, 120)
    client = Client()
    client.force_login(alice)
    reap_stuck_work()
    page = client.get(f"/runs/{run.pk}/").content.decode()
    assert SearchRun.objects.get(pk=run.pk).status == Status.QUEUED
    assert "put back in the queue automatically once" in page
    running_again(run, 601)
    reap_stuck_work()
    page = client.get(f"/runs/{run.pk}/").content.decode()
    assert SearchRun.objects.get(pk=run.pk).status == Status.FAILED
    assert "re-queued automatically once before" in page


@pytest.mark.django_db(transaction=True)  # the heartbeat thread has its own connection
def test_heartbeats_are_written_during_long_work_without_steps(alice, settings):
    settings.PONAS_HEARTBEAT_SECONDS = 0.05
    run = running(alice, 3600)
    seen = []
    with heartbeat(SearchRun.objects.filter(pk=run.pk, attempt=run.attempt)):
        for _ in range(4):
            time.sleep(0.2)  # e.g. a long evaluation: no step callbacks
            seen.append(SearchRun.objects.get(pk=run.pk).heartbeat)
    assert all(b > run.heartbeat for b in seen)
    assert seen[-1] > seen[0]
    assert timezone.now() - seen[-1] < timedelta(seconds=5)


@pytest.mark.parametrize("auto_resumes", [0, 1])
def test_a_worker_whose_run_was_reaped_stops_at_its_next_step(alice, settings, auto_resumes):
    # failed, or re-queued as a new attempt: either way the old attempt's work stops
    settings.PONAS_POLL_SECONDS = 0
    settings.PONAS_HEARTBEAT_TIMEOUT = 60
    settings.PONAS_AUTO_RESUMES = auto_resumes
    run = running(alice, 120)
    recorder = RunRecorder(run, "w1@test")
    assert not recorder.should_stop()  # (its own poll writes a heartbeat: make it stale again)
    SearchRun.objects.filter(pk=run.pk).update(heartbeat=run.heartbeat)
    assert reap_stuck_runs()
    assert recorder.should_stop()


def test_a_deployment_build_without_heartbeats_is_requeued_then_failed(
    api, alice, settings, django_capture_on_commit_callbacks
):
    settings.PONAS_HEARTBEAT_TIMEOUT = 60
    settings.PONAS_AUTO_RESUMES = 1
    run = make_finished_run(alice)
    beat = timezone.now() - timedelta(seconds=120)
    build = Deployment.objects.create(
        run=run, status=Status.RUNNING, started=beat, heartbeat=beat, worker="w1@gone"
    )
    hold_lease(build, 120)
    with django_capture_on_commit_callbacks() as callbacks:
        assert reap_stuck_deployments() == Reaped(requeued=[build.pk])
    body = api.get(f"/api/deployments/{build.pk}/").json()
    assert (body["status"], body["auto_resumes"], body["worker"]) == ("queued", 1, "")
    (send,) = callbacks  # build_deployment, on the run's queue, once this commits
    assert send.args == (BUILD_DEPLOYMENT, (build.pk,)) and send.keywords == {"queue": run.queue}

    running_again(build, 120)
    assert reap_stuck_deployments() == Reaped(failed=[build.pk])
    client = Client()
    client.force_login(alice)
    page = client.get(f"/deployments/{build.pk}/").content.decode()
    build.refresh_from_db()
    assert build.status == Status.FAILED
    assert build.error == stuck_message(beat, 1, "deploy again to build it")
    assert "re-queued automatically once before" in page


def test_live_deployment_builds_are_left_alone(alice, settings):
    settings.PONAS_HEARTBEAT_TIMEOUT = 60
    run = make_finished_run(alice)
    now = timezone.now()
    live = Deployment.objects.create(run=run, status=Status.RUNNING, started=now, heartbeat=now)
    hold_lease(live, 0)
    queued = Deployment.objects.create(run=run)
    assert reap_stuck_deployments() == Reaped()
    assert Deployment.objects.get(pk=live.pk).status == Status.RUNNING
    assert Deployment.objects.get(pk=queued.pk).status == Status.QUEUED


def test_reads_change_nothing_even_when_work_is_stuck(api, alice, settings):
    # the pages and the API only read: a stuck run or build stays as it is until a worker,
    # beat's periodic task or the management command looks
    settings.PONAS_HEARTBEAT_TIMEOUT = 60
    settings.PONAS_AUTO_RESUMES = 0
    run = running(alice, 120)
    beat = timezone.now() - timedelta(seconds=120)
    build = Deployment.objects.create(
        run=make_finished_run(alice), status=Status.RUNNING, started=beat, heartbeat=beat
    )
    hold_lease(build, 120)
    client = Client()
    client.force_login(alice)
    for url in ["/api/runs/", f"/api/runs/{run.pk}/", "/api/deployments/"]:
        assert api.get(url).status_code == 200
    api.get(f"/api/deployments/{build.pk}/")
    for url in ["/", f"/runs/{run.pk}/", "/deployments/", f"/deployments/{build.pk}/"]:
        assert client.get(url).status_code == 200
    assert SearchRun.objects.get(pk=run.pk).status == Status.RUNNING
    assert Deployment.objects.get(pk=build.pk).status == Status.RUNNING
    reap_stuck_work()
    assert SearchRun.objects.get(pk=run.pk).status == Status.FAILED
    assert Deployment.objects.get(pk=build.pk).status == Status.FAILED


def test_beat_sends_the_watchdog_look_every_watchdog_interval(settings):
    from webapp.celery import app

    (entry,) = settings.CELERY_BEAT_SCHEDULE.values()
    assert entry["task"] == reap_stuck_work.name == "tasks.watchdog.reap_stuck_work"
    assert entry["schedule"] == settings.PONAS_WATCHDOG_SECONDS
    assert app.amqp.router.route({}, entry["task"])["queue"].name == "default"
