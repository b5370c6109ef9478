"""No run, build or profile holds a user's slot forever: a resume's work takes over from a live
holder of the older attempt; a running run that nobody works on and nothing in a queue would
continue is reaped, and cancelling it ends it at once; hung work (a live process whose work
makes no progress) lets its lease expire and is reaped like a dead worker's; lease holders are
named by a random per-process token, so containers that share a host name cannot mistake each
other's live holders for dead; device profiles hold leases, are reaped and can be cancelled."""

from __future__ import annotations

import os
import time
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone

from ponas.search import Cancelled, SearchCallback, run_stage1
from ponas.search import evaluate_candidate as score_candidate
from tasks.progress import StopOnShutdown, heartbeat
from tests.web.helpers import client_for, make_finished_run, make_run
from webapp.celery import app
from webapp.runs import leases
from webapp.runs.leases import HOST, NAMESPACE, take
from webapp.runs.models import DeviceProfile, Lease, SearchRun, Stage, Status, Worker
from webapp.runs.services import PROFILE_LATENCY
from webapp.runs.watchdog import Reaped, reap_stuck_profiles, reap_stuck_runs

pytestmark = pytest.mark.django_db


def ago(seconds: float):
    return timezone.now() - timedelta(seconds=seconds)


def empty_queues(*queues: str) -> None:
    with app.connection_for_write() as conn:
        for queue in queues:
            conn.default_channel.queue_purge(queue)
    cache.clear()  # (queue lengths are cached for 2 s)


# ---- 1. a newer attempt, a run nobody works on, cancel -----------------------------------------


def test_a_resumed_runs_candidate_takes_over_from_the_older_attempts_live_holder(alice):
    run = make_run(alice, Status.RUNNING, stage=Stage.STAGE2, attempt=2)
    key = f"run {run.pk} layer 0 e3_k3"
    old = take(key, "w1@test", "t-attempt-1", "layer 0, candidate e3_k3", attempt=1, run=run)
    assert old is not None and old.renew()  # attempt 1 still scores it, alive
    # the same attempt's redelivery finds it held...
    assert take(key, "w2@test", "t-copy", "layer 0", attempt=1, run=run) is None
    # ...the resume's task (attempt 2) takes it over instead of being dropped
    new = take(key, "w2@test", "t-attempt-2", "layer 0, candidate e3_k3", attempt=2, run=run)
    assert new is not None
    lease = Lease.objects.get(key=key)
    assert (lease.attempt, lease.task_id, lease.deaths) == (2, "t-attempt-2", 0)
    assert not old.renew()  # the older task's next heartbeat finds it gone: it stops
    # and an older attempt never takes it back
    assert take(key, "w1@test", "t-attempt-1b", "layer 0", attempt=1, run=run) is None


def test_a_running_run_nobody_works_on_and_nothing_queued_is_reaped(alice, settings):
    # the run: running, no lease, a heartbeat five days old, nothing in any queue
    settings.PONAS_HEARTBEAT_TIMEOUT = 60
    settings.PONAS_AUTO_RESUMES = 1
    run = make_run(
        alice,
        Status.RUNNING,
        stage=Stage.STAGE2,
        started=ago(5 * 86400),
        heartbeat=ago(5 * 86400),
        queue="gpu",
    )
    Lease.objects.create(key=f"run {run.pk} layer 1 e3_k3", run=run, attempt=1, task_id="")
    empty_queues("gpu", "default")
    assert reap_stuck_runs() == Reaped(requeued=[run.pk])
    run.refresh_from_db()
    assert (run.status, run.attempt, run.auto_resumes) == (Status.QUEUED, 2, 1)
    # a run silent for less than the timeout is left alone (its next task may be on its way)
    fresh = make_run(alice, Status.RUNNING, stage=Stage.STAGE2, heartbeat=ago(30))
    assert reap_stuck_runs() == Reaped()
    assert SearchRun.objects.get(pk=fresh.pk).status == Status.RUNNING


def test_cancelling_a_running_run_nobody_works_on_ends_it_and_frees_the_slot(alice, settings):
    settings.PONAS_MAX_ACTIVE_RUNS = 1
    api = client_for(alice)
    run = make_run(alice, Status.RUNNING, stage=Stage.STAGE2, heartbeat=ago(5 * 86400))
    # a lease of an older attempt and one expired: nobody works on this attempt
    Lease.objects.create(
        key=f"run {run.pk} layer 0 e3_k3", run=run, attempt=1, task_id="t-gone",
        token="a-gone-process", renewed=ago(5 * 86400), progress=ago(5 * 86400),
    )  # fmt: skip
    response = api.post(f"/api/runs/{run.pk}/cancel/")
    assert response.status_code == 202
    assert response.json()["status"] == "cancelled"
    assert SearchRun.objects.get(pk=run.pk).finished is not None
    assert api.post("/api/runs/", {"preset": "digits"}, format="json").status_code == 201
    assert api.delete(f"/api/runs/{run.pk}/").status_code == 204


def test_cancelling_a_run_a_live_worker_works_on_is_left_to_that_worker(alice):
    api = client_for(alice)
    run = make_run(alice, Status.RUNNING, stage=Stage.STAGE1, heartbeat=timezone.now())
    held = take(f"run {run.pk} stage1", "w1@test", "t1", "stage 1", attempt=1, run=run)
    assert held is not None
    response = api.post(f"/api/runs/{run.pk}/cancel/")
    assert response.status_code == 202
    assert response.json()["status"] == "running"  # it stops at its next step
    assert SearchRun.objects.get(pk=run.pk).cancel_requested


class StopAfter(SearchCallback):
    """Asks to stop at the ``n``-th poll."""

    def __init__(self, n: int) -> None:
        self.n, self.polls = n, 0

    def should_stop(self) -> bool:
        self.polls += 1
        return self.polls >= self.n


def test_stage_2_polls_for_a_cancel_between_evaluations_too(tmp_path):
    steps = 2  # fine-tune steps: one poll each, then the evaluations (two suffixes)
    tiny = {"epochs": 1, "input_size": 8, "finetune_steps": steps, "suffix_samples": 2}
    run_stage1("digits", {**tiny, "bn_batches": 1, "eval_batches": 1}, tmp_path / "s")
    stage1 = tmp_path / "s" / "checkpoints" / "stage1.pt"
    counting = StopAfter(10**6)
    score_candidate(stage1, 0, "e3_k3", out=tmp_path / "a", callback=counting)
    assert counting.polls > steps  # polled while it evaluates, not only while it fine-tunes
    with pytest.raises(Cancelled):  # a cancel after the fine-tune stops the evaluation
        score_candidate(stage1, 0, "e3_k3", out=tmp_path / "b", callback=StopAfter(steps + 1))


# ---- 3. hung work -------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)  # (the heartbeat thread has its own connection)
def test_a_heartbeat_renews_the_lease_only_while_the_work_makes_progress(alice, settings):
    settings.PONAS_HEARTBEAT_SECONDS = 0.05
    settings.PONAS_PROGRESS_TIMEOUT = 0.3
    run = make_run(alice, Status.RUNNING, stage=Stage.STAGE1)
    holding = take(f"run {run.pk} stage1", "w1@test", "t1", "stage 1", attempt=1, run=run)
    lease = Lease.objects.filter(pk=Lease.objects.get(key=holding.key).pk)
    work = StopOnShutdown(holding)
    with heartbeat(SearchRun.objects.filter(pk=run.pk), holding):
        for _ in range(8):  # steps: each poll is progress
            work.should_stop()
            time.sleep(0.05)
        moving = lease.get().renewed
        time.sleep(0.3)  # a step that hangs: polls no more
        renewed_while_hung = lease.get().renewed
        time.sleep(0.3)
        assert lease.get().renewed == renewed_while_hung  # no longer renewed
        assert not holding.lost  # still its own: nobody took it yet
    assert renewed_while_hung - moving < timedelta(seconds=0.3)
    assert lease.get().progress < renewed_while_hung


def test_hung_work_of_a_live_worker_is_reaped_like_a_dead_ones(alice, settings):
    settings.PONAS_HEARTBEAT_TIMEOUT = 60
    settings.PONAS_PROGRESS_TIMEOUT = 600
    settings.PONAS_AUTO_RESUMES = 1
    run = make_run(alice, Status.RUNNING, stage=Stage.STAGE1, heartbeat=timezone.now())
    # its worker is alive and on the task (the registry says so), its heartbeat thread renews
    # the process's liveness, but the step has not moved for 11 minutes (a deadlocked DDP step)
    Lease.objects.create(
        key=f"run {run.pk} stage1", run=run, attempt=1, worker="w1@test", task_id="t1",
        token="tok-1", taken=ago(3600), renewed=ago(1), progress=ago(660),
    )  # fmt: skip
    Worker.objects.create(
        name="w1@test", token="tok-1", queues=["gpu"], started=ago(7200),
        last_seen=timezone.now(), current_task="tasks.search.run_search[t1] (1, 1)",
    )  # fmt: skip
    assert reap_stuck_runs() == Reaped(requeued=[run.pk])
    run.refresh_from_db()
    assert (run.status, run.attempt) == (Status.QUEUED, 2)
    # and the hung holder's lease no longer stops the new attempt's task
    assert take(f"run {run.pk} stage1", "w2@test", "t2", "stage 1", attempt=2, run=run)


# ---- 4. a holder is a process token, not host name + pid ------------------------------------------


def test_a_live_holder_in_another_container_with_the_same_host_name_is_not_taken_over(alice):
    run = make_run(alice, Status.RUNNING, stage=Stage.STAGE1)
    key = f"run {run.pk} stage1"
    # another container: the same host name, its own pid namespace, a pid that means nothing
    # here (no such process in ours), renewing its lease
    Lease.objects.create(
        key=key, run=run, attempt=1, worker="w1@box", host=HOST, pid=os.getpid() + 100_000,
        token="another-containers-process", namespace="another-boot pid:[4026532999]",
        task_id="t1", taken=timezone.now(), renewed=timezone.now(), progress=timezone.now(),
    )  # fmt: skip
    assert take(key, "w2@box", "t1", "stage 1", attempt=1, run=run) is None
    lease = Lease.objects.get(key=key)
    assert (lease.token, lease.deaths) == ("another-containers-process", 0)
    # while in our own namespace a dead pid is dead at once, and counted
    Lease.objects.filter(key=key).update(namespace=NAMESPACE)
    assert take(key, "w2@box", "t1", "stage 1", attempt=1, run=run) is not None
    assert Lease.objects.get(key=key).deaths == 1


def test_each_worker_process_has_its_own_token_in_its_leases_and_the_registry(alice):
    run = make_run(alice, Status.RUNNING, stage=Stage.STAGE1)
    held = take(f"run {run.pk} stage1", "w1@test", "t1", "stage 1", attempt=1, run=run)
    lease = Lease.objects.get(key=held.key)
    assert lease.token == leases.token() and len(lease.token) == 32
    assert lease.namespace == NAMESPACE
    # a forked child (a prefork pool's process) draws its own
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        os.write(write, leases.token().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 64).decode() not in ("", lease.token)
    # a holding is the process's token, not its pid: another token cannot renew it
    Lease.objects.filter(key=held.key).update(token="someone-else")
    assert not held.renew()


# ---- 2. device profiles ----------------------------------------------------------------------------


def profile_of(run, status: str, **fields) -> DeviceProfile:
    return DeviceProfile.objects.create(
        run=run, queue="gpu", status=status, requested_by=run.owner, **fields
    )


def test_a_profile_whose_worker_vanished_is_requeued_then_failed(
    alice, settings, django_capture_on_commit_callbacks
):
    settings.PONAS_HEARTBEAT_TIMEOUT = 60
    settings.PONAS_AUTO_RESUMES = 1
    run = make_finished_run(alice)
    profile = profile_of(run, Status.RUNNING, started=ago(3 * 86400), heartbeat=ago(3 * 86400))
    lost = dict(task_id="t-gone", token="gone", renewed=ago(3 * 86400), worker="w1@gone")
    Lease.objects.create(key=f"profile {profile.pk}", profile=profile, **lost)
    with django_capture_on_commit_callbacks() as sent:
        assert reap_stuck_profiles() == Reaped(requeued=[profile.pk])
    assert [(c.args, c.keywords) for c in sent] == [
        ((PROFILE_LATENCY, (profile.pk,)), {"queue": "gpu"})
    ]
    profile.refresh_from_db()
    assert (profile.status, profile.auto_resumes) == (Status.QUEUED, 1)
    DeviceProfile.objects.filter(pk=profile.pk).update(status=Status.RUNNING)
    Lease.objects.filter(profile=profile).update(**lost)
    assert reap_stuck_profiles() == Reaped(failed=[profile.pk])
    profile.refresh_from_db()
    assert profile.status == Status.FAILED
    assert profile.error.startswith("the worker stopped sending heartbeats at ")
    assert profile.error.endswith("profile the device again")


def test_a_profile_can_be_cancelled_and_frees_the_quota(alice, bob, settings):
    settings.PONAS_MAX_ACTIVE_PROFILES = 1
    run = make_finished_run(alice)
    api = client_for(alice)
    stuck = profile_of(run, Status.RUNNING, started=ago(3 * 86400))
    refused = api.post(f"/api/runs/{run.pk}/profiles/", {"queue": "gpu"}, format="json")
    assert refused.status_code == 429
    assert client_for(bob).post(f"/api/runs/{run.pk}/profiles/{stuck.pk}/cancel/").status_code == (
        404
    )
    response = api.post(f"/api/runs/{run.pk}/profiles/{stuck.pk}/cancel/")
    assert response.status_code == 202
    assert response.json()["status"] == "cancelled"
    again = api.post(f"/api/runs/{run.pk}/profiles/{stuck.pk}/cancel/")
    assert again.status_code == 409
    assert again.json() == {
        "error": f"profile {stuck.pk} is cancelled; only queued or running profiles can be "
        "cancelled"
    }
    queued = api.post(f"/api/runs/{run.pk}/profiles/", {"queue": "gpu"}, format="json")
    assert queued.status_code == 202
    response = api.post(f"/api/runs/{run.pk}/profiles/{queued.json()['id']}/cancel/")
    assert response.json()["status"] == "cancelled"  # a queued one too


def test_a_dead_holder_here_is_lost_at_once_unless_its_prefork_worker_redelivers_it(alice):
    import subprocess
    import sys

    from webapp.runs.leases import lost

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run = make_run(alice, Status.RUNNING, stage=Stage.STAGE1, heartbeat=timezone.now())
    lease = Lease.objects.create(
        key=f"run {run.pk} stage1", run=run, attempt=1, worker="w1@here", pid=dead.pid,
        token="dead-process", namespace=NAMESPACE, task_id="t1", taken=timezone.now(),
        renewed=timezone.now(), progress=timezone.now(),
    )  # fmt: skip
    registry = Worker.objects.create(
        name="w1@here", token="dead-process", pid=dead.pid, queues=["gpu"], started=ago(60),
        last_seen=timezone.now(), current_task="tasks.search.run_search[t1] (1, 1)",
    )  # fmt: skip
    # a solo worker killed: the process that held the lease was the worker itself
    assert set(lost(timezone.now(), Lease.objects.all())) == {lease.pk}
    # a prefork worker's child killed: the worker lives and hands the task out again itself
    Worker.objects.filter(pk=registry.pk).update(pid=os.getpid())
    assert lost(timezone.now(), Lease.objects.all()) == {}
