"""Audits through a real worker: from the API to the report (a tiny pool, one epoch), a
training whose holder died taken over by the redelivery, and a cancel that stops the training
under way."""

from __future__ import annotations

import subprocess
import time

import numpy as np
import pytest
from django.utils import timezone

from ponas.audit import budget_figures, seed_agreement, sentence
from tests.web.helpers import make_finished_run
from tests.web.test_api_workers import (  # noqa: F401 (workers is a fixture)
    TINY,
    token_client,
    wait_for,
    workers,
)
from webapp.runs.leases import HOST, NAMESPACE
from webapp.runs.models import Audit, AuditNetwork, Lease, Status

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _finished_run(django_user_model):
    run = make_finished_run(django_user_model.objects.get(username="ada"))
    run.config = TINY
    run.save(update_fields=["config"])
    return run


def test_an_audit_runs_from_the_api_to_its_report_on_a_real_worker(
    django_user_model,
    workers,  # noqa: F811
):
    api = token_client(django_user_model)
    run = _finished_run(django_user_model)
    body = {"budgets": ["1.4M", "1.9M"], "networks": 3, "epochs": 1, "seeds": 2}
    response = api.post(f"/api/runs/{run.pk}/audits/", body, format="json")
    assert response.status_code == 202, response.json()
    audit_id = response.json()["id"]
    # a process that died holding one training's lease (its renewal still recent): the
    # delivery of that training takes the lease over at once, counting the death
    dead = AuditNetwork.objects.filter(audit_id=audit_id).first()
    now = timezone.now()
    Lease.objects.create(
        key=f"audit {audit_id} network {dead.pk}",
        audit_id=audit_id,
        attempt=1,  # the audit's (first) attempt
        worker="w9@test",
        host=HOST,
        namespace=NAMESPACE,  # this machine's boot and pid namespace: the pid can be checked
        pid=_dead_pid(),
        task_id="task-of-a-dead-process",
        taken=now,
        renewed=now,
    )

    pool = workers(1)
    began = time.monotonic()
    body = wait_for(api, f"/api/runs/{run.pk}/audits/{audit_id}/", pool, timeout=300)
    took = time.monotonic() - began
    assert body["status"] == "succeeded", f"{body}\n{pool.output()}"
    assert body["trained"] == body["total"] and body["progress"] == 1
    assert Lease.objects.get(key=f"audit {audit_id} network {dead.pk}").deaths == 1
    report = body["results"]
    assert report["seeds"] == 2 and report["recipe"]["epochs"] == 1
    assert [f["budget"] for f in report["budgets"]] == [1.4e6, 1.9e6]
    truths = {
        (tuple(c), s): a
        for c, s, a in AuditNetwork.objects.filter(audit_id=audit_id).values_list(
            "choices", "seed", "accuracy"
        )
    }
    assert all(0 <= a <= 1 for a in truths.values())
    for fig, pool_ in zip(report["budgets"], body["pools"], strict=True):
        # the report rests on the networks drawn when the audit was asked for
        assert fig["pool"] == pool_["pool"] and fig["deployed"] == pool_["deployed"]
        per_seed = np.asarray([[truths[(tuple(n), s)] for n in fig["pool"]] for s in (0, 1)])
        assert fig["truth"] == pytest.approx(per_seed.mean(axis=0).tolist())
        deployed = np.mean([truths[(tuple(fig["deployed"]), s)] for s in (0, 1)])
        expected = budget_figures(fig["truth"], fig["score"], fig["macs"], deployed)
        for key in ("tau_table", "tau_macs", "difference", "deployed_percentile"):
            assert fig[key] == pytest.approx(expected[key]), key
            assert fig[key + "_interval"] == pytest.approx(expected[key + "_interval"]), key
        agreement, spread = seed_agreement(per_seed)
        assert fig["seed_agreement"] == pytest.approx(agreement)
        assert fig["truth_spread"] == pytest.approx(spread)
        assert fig["sentence"] == sentence(fig)
    print(f"audit of {body['total']} trainings took {took:.1f} s on one worker")


def test_a_cancelled_audit_stops_the_training_under_way(
    django_user_model,
    workers,  # noqa: F811
):
    api = token_client(django_user_model)
    run = _finished_run(django_user_model)
    body = {"budgets": ["1.4M"], "networks": 3, "epochs": 60}  # trainings of many seconds
    audit_id = api.post(f"/api/runs/{run.pk}/audits/", body, format="json").json()["id"]
    pool = workers(1)
    held = Lease.objects.filter(audit_id=audit_id, task_id__gt="")
    deadline = time.monotonic() + 120
    while not (held.exists() and Audit.objects.get(pk=audit_id).status == Status.RUNNING):
        assert time.monotonic() < deadline, pool.output()
        pool.check_alive()
        time.sleep(0.1)
    time.sleep(1)  # into the training
    asked = time.monotonic()
    response = api.post(f"/api/runs/{run.pk}/audits/{audit_id}/cancel/")
    assert response.status_code == 202 and response.json()["status"] == "cancelled"
    # The training stops at its next step and releases its lease. A training's set-up (a
    # fresh supernet, BN recalibration) takes seconds before its first step on a loaded
    # 2-core machine, and its 60 epochs would take minutes: 30 s tells the two apart.
    while held.exists():
        assert time.monotonic() - asked < 30, (
            f"still training 30 s after the cancel\n{pool.output()}"
        )
        time.sleep(0.1)
    print(f"the training stopped {time.monotonic() - asked:.1f} s after the cancel")
    audit = Audit.objects.get(pk=audit_id)
    assert audit.status == Status.CANCELLED and audit.results is None
    assert AuditNetwork.objects.filter(audit_id=audit_id, accuracy__isnull=True).exists()


def test_an_audit_whose_worker_is_killed_is_finished_by_the_next_worker(
    django_user_model,
    workers,  # noqa: F811
    settings,
    monkeypatch,
):
    from tests.web.test_worker_killed import fast_watchdog, kill

    fast_watchdog(monkeypatch, settings, auto_resumes=1)
    api = token_client(django_user_model)
    run = _finished_run(django_user_model)
    body = {"budgets": ["1.6M"], "networks": 3, "epochs": 1}
    audit_id = api.post(f"/api/runs/{run.pk}/audits/", body, format="json").json()["id"]
    held = Lease.objects.filter(audit_id=audit_id, task_id__gt="")

    pool = workers(1)
    deadline = time.monotonic() + 120
    while not (held.exists() and Audit.objects.get(pk=audit_id).status == Status.RUNNING):
        assert time.monotonic() < deadline, pool.output()
        pool.check_alive()
        time.sleep(0.05)
    kill(pool)  # mid-training: no warm shutdown, its lease stays held and stops being renewed
    assert Audit.objects.get(pk=audit_id).status == Status.RUNNING

    pool = workers(1)  # nothing else: its watchdog finds the lost training and re-sends it
    body = wait_for(api, f"/api/runs/{run.pk}/audits/{audit_id}/", pool, timeout=300)
    assert body["status"] == "succeeded", f"{body}\n{pool.output()}"
    assert body["auto_resumes"] == 1
    assert body["trained"] == body["total"]
    assert not AuditNetwork.objects.filter(audit_id=audit_id, accuracy__isnull=True).exists()
