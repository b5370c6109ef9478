"""Leases and the watchdog that tells waiting from lost: a copy of a task whose lease a live
process holds does nothing; work that waits in a queue is never reaped; a process that died
holding a lease is taken over at once, and after PONAS_MAX_DEATHS deaths the run fails with
the reason instead of being delivered again forever."""

from __future__ import annotations

import subprocess
import sys
from contextlib import contextmanager
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.core.cache import cache
from django.utils import timezone

from tasks.progress import leased
from tests.web.helpers import hold_lease, make_run
from webapp.celery import app
from webapp.runs.leases import NAMESPACE, CrashLoop, take
from webapp.runs.models import Lease, SearchRun, Stage, Status, Worker
from webapp.runs.watchdog import Reaped, reap_stuck_runs

pytestmark = pytest.mark.django_db

EVALUATE = "tasks.search.evaluate_candidate"


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def task(worker: str = "w1@test", task_id: str = "t1"):
    return SimpleNamespace(request=SimpleNamespace(hostname=worker, id=task_id))


@contextmanager
def task_in_queue(run, name: str, args: tuple):
    """A task of ``run`` waiting in its queue, for real (the test's broker), while the block
    runs; the queue is emptied after."""
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge(run.queue)
    app.send_task(name, args, queue=run.queue)
    cache.clear()  # (queue lengths are cached for 2 s)
    try:
        yield
    finally:
        with app.connection_for_write() as conn:
            conn.default_channel.queue_purge(run.queue)
        cache.clear()


def stale(seconds: float):
    return timezone.now() - timedelta(seconds=seconds)


def test_a_second_copy_of_a_task_finds_the_lease_held_and_does_nothing(alice):
    run = make_run(alice, Status.RUNNING)
    first = take(f"run {run.pk} stage1", "w1@test", "t1", "stage 1", attempt=1, run=run)
    assert first is not None
    # a redelivery of the same task on another worker, and a second copy on this one
    assert take(f"run {run.pk} stage1", "w2@test", "t1", "stage 1", attempt=1, run=run) is None
    with leased(task("w1@test", "t2"), f"run {run.pk} stage1", "stage 1", run=run) as held:
        assert held is None
    first.release()
    second = take(f"run {run.pk} stage1", "w2@test", "t3", "stage 1", attempt=1, run=run)
    assert second is not None
    assert not first.renew()  # the released holder cannot renew what is no longer its own
    assert second.renew()


def test_a_lease_whose_process_died_is_taken_over_and_the_death_counted(alice, settings):
    settings.PONAS_MAX_DEATHS = 3
    run = make_run(alice, Status.RUNNING)
    key = f"run {run.pk} stage1"
    for deaths in (1, 2):
        Lease.objects.update_or_create(
            key=key,
            defaults={"run": run, "attempt": 1, "namespace": NAMESPACE, "pid": dead_pid(),
                      "task_id": "t1", "renewed": timezone.now(), "worker": "w1@test"},
        )  # fmt: skip
        held = take(key, "w1@test", "t1", "stage 1", attempt=1, run=run)
        assert held is not None  # at once: no need to wait for the lease to expire
        assert Lease.objects.get(key=key).deaths == deaths
        Lease.objects.filter(key=key).update(pid=dead_pid())  # killed again (out of memory)
    with pytest.raises(CrashLoop) as caught:
        take(key, "w1@test", "t1", "stage 1", attempt=1, run=run)
    assert str(caught.value) == (
        "the worker process died 3 times while running stage 1 (out of memory?); "
        "resume to try again from the last checkpoint"
    )


def test_a_crash_loop_fails_the_run_with_the_reason(api, alice, settings):
    settings.PONAS_MAX_DEATHS = 1
    run = make_run(alice, Status.RUNNING, stage=Stage.STAGE1)
    key = f"run {run.pk} stage1"
    Lease.objects.create(
        key=key, run=run, attempt=1, namespace=NAMESPACE, pid=dead_pid(), task_id="t1",
        renewed=timezone.now(), worker="w1@test",
    )  # fmt: skip
    with leased(task(), key, "stage 1", run=run) as held:
        assert held is None
    body = api.get(f"/api/runs/{run.pk}/").json()
    assert body["status"] == "failed"
    assert body["error"].startswith(
        "the worker process died once while running stage 1 (out of memory?)"
    )
    # a manual resume is a new attempt: the count starts again
    assert api.post(f"/api/runs/{run.pk}/resume/").status_code == 202
    run.refresh_from_db()
    assert take(key, "w1@test", "t2", "stage 1", attempt=run.attempt, run=run) is not None


def test_a_run_waiting_in_the_queue_is_never_reaped(alice, settings):
    # stage 2: its candidates wait behind other users' work; no task of it holds a lease
    settings.PONAS_HEARTBEAT_TIMEOUT = 20
    settings.PONAS_AUTO_RESUMES = 0
    waiting = make_run(
        alice, Status.RUNNING, stage=Stage.STAGE2, started=stale(3600), heartbeat=stale(3600)
    )
    hold_lease(waiting, 3600, key="layer 0 e3_k3")
    Lease.objects.filter(run=waiting).update(task_id="")  # the candidate task finished
    queued = make_run(alice, Status.QUEUED)
    with task_in_queue(waiting, EVALUATE, (waiting.pk, 1, 0, "e3_k5")):
        assert reap_stuck_runs() == Reaped()
    assert SearchRun.objects.get(pk=waiting.pk).status == Status.RUNNING
    assert SearchRun.objects.get(pk=queued.pk).status == Status.QUEUED


def test_an_expired_lease_of_a_worker_still_on_the_task_is_not_lost(alice, settings):
    settings.PONAS_HEARTBEAT_TIMEOUT = 20
    settings.PONAS_AUTO_RESUMES = 0
    run = make_run(alice, Status.RUNNING, started=stale(60), heartbeat=stale(60))
    hold_lease(run, 60, worker="w1@busy")
    Worker.objects.create(
        name="w1@busy", queues=["gpu"], started=stale(3600), last_seen=timezone.now(),
        current_task="tasks.search.run_search[task-of-a-gone-worker] (1, 1)",
    )  # fmt: skip
    assert reap_stuck_runs() == Reaped()
    Worker.objects.filter(name="w1@busy").update(last_seen=stale(60))  # now it is gone
    assert reap_stuck_runs() == Reaped(failed=[run.pk])


def test_a_lease_of_an_earlier_attempt_does_not_make_the_run_lost(alice, settings):
    settings.PONAS_HEARTBEAT_TIMEOUT = 20
    settings.PONAS_AUTO_RESUMES = 0
    run = make_run(alice, Status.RUNNING, started=stale(60), heartbeat=stale(60))
    hold_lease(run, 60)
    SearchRun.objects.filter(pk=run.pk).update(attempt=2)  # resumed since: the lease is old
    with task_in_queue(run, "tasks.search.run_search", (run.pk, 2)):  # attempt 2 waits
        assert reap_stuck_runs() == Reaped()
