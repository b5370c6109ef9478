"""The run page's stage timeline: when each stage started and, once done, how long it took."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from tests.web.helpers import make_run
from webapp.runs.models import SearchRun, Stage, Status

pytestmark = pytest.mark.django_db

CREATED = datetime(2026, 3, 14, 9, 0, 0, tzinfo=UTC)


def timeline_steps(html: str) -> dict[str, str]:
    """The text of each step of the timeline, by stage."""
    steps = re.findall(r'<li class="tl-\w+" data-stage="(\w+)">(.*?)</li>', html, re.S)
    return {stage: " ".join(re.sub(r"<[^>]+>", " ", body).split()) for stage, body in steps}


def page_of(browser, run: SearchRun) -> dict[str, str]:
    # created is set on insert: put it where the story needs it
    SearchRun.objects.filter(pk=run.pk).update(created=CREATED)
    return timeline_steps(browser.get(f"/runs/{run.pk}/").content.decode())


def test_finished_run_shows_when_each_stage_started_and_how_long_it_took(browser, alice):
    run = make_run(
        alice,
        Status.SUCCEEDED,
        stage=Stage.DONE,
        progress=1.0,
        started=CREATED + timedelta(seconds=5),
        stage2_started=CREATED + timedelta(minutes=3, seconds=25),
        finished=CREATED + timedelta(minutes=10, seconds=25),
    )
    steps = page_of(browser, run)
    assert steps == {
        "queued": "Queued Mar 14, 09:00:00 took 5 s",
        "stage1": "Stage 1 · meta-training Mar 14, 09:00:05 took 3 min 20 s",
        "stage2": "Stage 2 · accuracy table Mar 14, 09:03:25 took 7 min 00 s",
        "done": "Done Mar 14, 09:10:25",
    }


def test_stage_2_shows_its_start_while_it_runs(browser, alice):
    run = make_run(
        alice,
        Status.RUNNING,
        stage=Stage.STAGE2,
        progress=0.6,
        started=CREATED + timedelta(seconds=5),
        stage2_started=CREATED + timedelta(minutes=3, seconds=25),
    )
    steps = page_of(browser, run)
    assert steps["stage1"] == "Stage 1 · meta-training Mar 14, 09:00:05 took 3 min 20 s"
    assert steps["stage2"] == "Stage 2 · accuracy table Mar 14, 09:03:25"
    assert steps["done"] == "Done"


def test_a_resumed_run_keeps_the_time_stage_2_first_began(browser, alice):
    from tasks.progress import begin_stage2

    run = make_run(alice, Status.RUNNING, stage=Stage.STAGE1, started=CREATED)
    begin_stage2(run)
    first = SearchRun.objects.get(pk=run.pk).stage2_started
    assert first is not None and run.stage == Stage.STAGE2
    begin_stage2(run)  # stage 1 replayed from its checkpoint after a resume
    run.refresh_from_db()
    assert (run.stage, run.stage2_started) == (Stage.STAGE2, first)
    assert first.strftime("%b %-d, %H:%M:%S") in page_of(browser, run)["stage2"]
