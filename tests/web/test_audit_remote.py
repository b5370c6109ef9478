"""``ponas remote audit`` against a live test server: the estimate before anything starts, a
bad budget as one line naming the flag, and an audit through a real worker to its report."""

from __future__ import annotations

import json

import pytest

from tests.web.helpers import make_finished_run, make_run
from tests.web.test_remote_cli import config, ponas, signed_in  # noqa: F401 (fixtures)
from tests.web.workers import Workers
from webapp.runs.models import Audit

pytestmark = pytest.mark.django_db(transaction=True)  # the live server has its own connection


def test_user_sees_what_an_audit_costs_before_starting_it(signed_in, alice, capsys):  # noqa: F811
    run = make_finished_run(alice)
    args = ["remote", "audit", str(run.pk), "--budgets", "1.4M", "1.9M", "--networks", "3"]
    status, out, err = ponas(capsys, *args, "--epochs", "1", "--estimate", "--json")
    assert status == 0, err
    one = json.loads(out)
    # 6 drawn and the 2 deployed, less those the draw and the solver share
    assert 6 <= one["trainings"] <= 8
    status, out, err = ponas(capsys, *args, "--epochs", "1", "--estimate")
    assert out == one["text"] + "\n"
    assert out.startswith(
        f"{one['trainings']} trainings (6 drawn networks and the deployed network of each of 2 "
    )
    assert f"one more seed adds {one['trainings']} trainings" in out
    status, out, _ = ponas(capsys, *args, "--epochs", "2", "--seeds", "2", "--estimate", "--json")
    two = json.loads(out)
    assert (two["trainings"], two["epochs"], two["seeds"]) == (2 * one["trainings"], 2, 2)
    assert not Audit.objects.exists()


def test_a_bad_audit_reads_as_one_line_naming_the_flag(signed_in, alice, capsys):  # noqa: F811
    run = make_finished_run(alice)
    status, _, err = ponas(capsys, "remote", "audit", str(run.pk), "--budgets", "lots")
    assert status == 2
    assert err.startswith("ponas: error: --budgets: budget 1: invalid budget 'lots': ")
    assert err.count("\n") == 1
    status, _, err = ponas(
        capsys, "remote", "audit", str(run.pk), "--budgets", "1.4M", "--networks", "500"
    )
    assert (status, err) == (
        2,
        "ponas: error: --networks: networks=500 is above this server's limit of 50\n",
    )
    unfinished = make_run(alice)
    status, _, err = ponas(capsys, "remote", "audit", str(unfinished.pk), "--budgets", "1.4M")
    assert (status, err) == (
        2,
        f"ponas: error: run {unfinished.pk} has no accuracy table yet (status queued); audit a "
        "succeeded run\n",
    )


@pytest.mark.slow
def test_user_audits_a_run_through_a_worker_and_reads_the_report(
    signed_in,  # noqa: F811
    alice,
    capsys,
    tmp_path,
):
    run = make_finished_run(alice)
    pool = Workers(1, tmp_path)
    try:
        status, out, err = ponas(
            capsys, "remote", "audit", str(run.pk), "--budgets", "1.6M", "--networks", "3",
            "--epochs", "1", "--wait",
        )  # fmt: skip
    finally:
        pool.stop()
    assert status == 0, f"{err}\n{pool.output()}"
    lines = out.splitlines()
    assert lines[0].startswith(f"started audit {Audit.objects.get().pk} of run {run.pk}: ")
    assert lines[1] == (
        "audit: networks trained from scratch (1 epochs, lr 0.1, 1 seed(s)), scored on the "
        "test split"
    )
    assert "budget 1.60M MACs: 3 of " in out
    assert "tau_table" in out and "deployed percentile" in out
    assert Audit.objects.get().results["budgets"][0]["sentence"] in out
