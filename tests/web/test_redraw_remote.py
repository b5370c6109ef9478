"""``ponas remote redraw`` against a live test server: the new run's id, a refused seed or
setting as one line naming the flag, and through a real worker to the entry noise."""

from __future__ import annotations

import json
import shutil

import pytest

from ponas import noise
from tests.conftest import TINY
from tests.web.helpers import make_finished_run, make_run
from tests.web.test_redraw_api import with_checkpoint
from tests.web.test_remote_cli import config, ponas, signed_in  # noqa: F401 (fixtures)
from tests.web.workers import Workers
from webapp.runs.models import SearchRun, Stage, Status
from webapp.runs.tables import store_table

pytestmark = pytest.mark.django_db(transaction=True)  # the live server has its own connection


def test_user_starts_a_redraw_and_reads_its_id(signed_in, alice, capsys):  # noqa: F811
    run = with_checkpoint(make_finished_run(alice))
    status, out, err = ponas(capsys, "remote", "redraw", str(run.pk), "--stage2-seed", "3")
    assert status == 0, err
    redraw = SearchRun.objects.get(source_run=run)
    assert out == (
        f"started run {redraw.pk} (stage 2 again on run {run.pk}, stage2_seed 3) in queue "
        f"{redraw.queue}\n"
    )
    status, out, err = ponas(
        capsys, "remote", "redraw", str(run.pk), "--set", "eval_batches=2", "--json"
    )
    assert status == 0, err
    body = json.loads(out)
    assert body["source_run"] == run.pk and body["config"] == {"stage2_seed": 1, "eval_batches": 2}


def test_a_refused_redraw_reads_as_one_line_naming_the_flag(signed_in, alice, capsys):  # noqa: F811
    run = with_checkpoint(make_finished_run(alice))
    status, _, err = ponas(capsys, "remote", "redraw", str(run.pk), "--stage2-seed", "0")
    assert (status, err) == (
        2,
        f"ponas: error: --stage2-seed: run {run.pk}'s stage 2 drew from seed 0: give another "
        "seed to measure how much its entries move\n",
    )
    status, _, err = ponas(capsys, "remote", "redraw", str(run.pk), "--set", "epochs=3")
    assert status == 2 and err.startswith("ponas: error: --set: a redraw changes stage-2 settings")
    unfinished = make_run(alice)
    status, _, err = ponas(capsys, "remote", "redraw", str(unfinished.pk))
    assert (status, err) == (
        2,
        f"ponas: error: run {unfinished.pk} has no accuracy table yet (status queued); run "
        "stage 2 again on a succeeded run\n",
    )
    assert not SearchRun.objects.filter(source_run__isnull=False).exists()


@pytest.mark.slow
def test_user_redraws_through_a_worker_and_reads_the_entry_noise(
    signed_in,  # noqa: F811
    alice,
    capsys,
    tmp_path,
    tiny_search,
):
    out, table, _ = tiny_search
    run = make_run(alice, Status.SUCCEEDED, stage=Stage.DONE, progress=1.0, config=TINY)
    store_table(run, table)
    run.stage1_checkpoint.parent.mkdir(parents=True)
    shutil.copyfile(out / "checkpoints" / "stage1.pt", run.stage1_checkpoint)
    pool = Workers(1, tmp_path)
    try:
        status, printed, err = ponas(
            capsys, "remote", "redraw", str(run.pk), "--stage2-seed", "2", "--wait"
        )
    finally:
        pool.stop()
    assert status == 0, f"{err}\n{pool.output()}"
    redraw = SearchRun.objects.get(source_run=run)
    doc = noise.load(redraw.noise_file)
    lines = printed.splitlines()
    assert lines[0].startswith(f"started run {redraw.pk} (stage 2 again on run {run.pk}")
    assert lines[1] == (
        f"run {redraw.pk} succeeded: entry noise against run {run.pk} (stage2_seed -1 vs 2):"
    )
    assert lines[2:-1] == [f"  {line}" for line in noise.summary_lines(doc)]
    assert lines[-1].endswith(f"of {len(doc['layers'])} layers within the budget (ratio <= 0.5)")
