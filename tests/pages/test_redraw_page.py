"""The run page and redraws (stage 2 again on a run's supernet): the source's button starts
one through the page (the API's serializer and service) and lists it; a redraw's page shows
its entry noise against the source, per layer against the budget, and the self-agreement."""

from __future__ import annotations

import re

import pytest

from ponas import noise
from tests.pages.test_table_fidelity import text_of
from tests.web.helpers import make_finished_run, make_team
from webapp.runs.models import SearchRun, Status
from webapp.runs.tables import accuracy_table

pytestmark = pytest.mark.django_db


def with_checkpoint(run: SearchRun) -> SearchRun:
    run.stage1_checkpoint.parent.mkdir(parents=True, exist_ok=True)
    run.stage1_checkpoint.write_bytes(b"stage 1")
    return run


def csrf(page: str) -> str:
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)[1]


def test_the_source_page_starts_a_redraw_and_lists_it(browser, alice):
    source = with_checkpoint(make_finished_run(alice))
    page = browser.get(f"/runs/{source.pk}/").content.decode()
    assert "Measure entry noise</button>" in page
    assert 'name="stage2_seed" min="0" value="1"' in page  # 0 is the source's own seed
    response = browser.post(
        f"/runs/{source.pk}/redraw/", {"stage2_seed": "4", "csrfmiddlewaretoken": csrf(page)}
    )
    redraw = SearchRun.objects.get(source_run=source)
    assert response.status_code == 302 and response["Location"] == f"/runs/{redraw.pk}/"
    assert redraw.config["stage2_seed"] == 4 and redraw.status == Status.QUEUED
    page = browser.get(f"/runs/{source.pk}/").content.decode()
    assert f"#{redraw.pk} seed 4" in text_of(page, "redraw-list")
    assert 'name="stage2_seed" min="0" value="1"' in page  # still not drawn
    # the redraw's page names its source
    page = browser.get(f"/runs/{redraw.pk}/").content.decode()
    assert f"stage 2 again on run #{source.pk}" in re.sub(r"<[^>]+>", "", page)


def test_a_refused_redraw_says_why_on_the_page(browser, alice, bob):
    source = with_checkpoint(make_finished_run(alice))
    page = browser.get(f"/runs/{source.pk}/").content.decode()
    token = csrf(page)
    response = browser.post(
        f"/runs/{source.pk}/redraw/",
        {"stage2_seed": "0", "csrfmiddlewaretoken": token},
        follow=True,
    )
    assert "drew from seed 0" in response.content.decode()
    source.stage1_checkpoint.unlink()
    response = browser.post(
        f"/runs/{source.pk}/redraw/",
        {"stage2_seed": "2", "csrfmiddlewaretoken": token},
        follow=True,
    )
    assert "no stage-1 checkpoint" in response.content.decode()
    assert "redraw-form" not in response.content.decode()  # no button without a checkpoint
    assert not SearchRun.objects.filter(source_run=source).exists()
    # a member of the run's team sees the run but not the button, and may not post
    source.team = make_team("lab", members=[bob])
    source.save(update_fields=["team"])
    with_checkpoint(source)
    browser.force_login(bob)
    page = browser.get(f"/runs/{source.pk}/").content.decode()
    assert "redraw-form" not in page
    browser.post(f"/runs/{source.pk}/redraw/", {"csrfmiddlewaretoken": csrf(page)})
    assert not SearchRun.objects.filter(source_run=source).exists()


def test_a_redraw_page_shows_its_entry_noise_against_the_source(browser, alice):
    source = make_finished_run(alice)
    redraw = make_finished_run(alice, seed=1)
    redraw.source_run = source
    redraw.save(update_fields=["source_run"])
    doc = noise.measure(accuracy_table(source), accuracy_table(redraw))
    redraw.out_dir.mkdir(parents=True, exist_ok=True)
    noise.save(doc, redraw.noise_file)
    page = browser.get(f"/runs/{redraw.pk}/").content.decode()
    card = text_of(page, "redraw-noise")
    assert card.startswith(f"Entry noise against run #{source.pk}")
    within = sum(x["ratio"] is not None and x["ratio"] <= noise.BUDGET for x in doc["layers"])
    assert text_of(page, "noise-within").startswith(
        f"{within} of {len(doc['layers'])} layers within the budget."
    )
    for g in doc["agreement"]:
        if g["tau"] is not None:
            assert f"Kendall's tau {g['tau']:.2f}" in text_of(page, "noise-within")
    first = doc["layers"][0]
    row = re.search(r'<tr data-redraw-layer="1">(.*?)</tr>', page, re.S)[1]
    assert f"{100 * first['noise']:.2f}" in row and f"{100 * first['spread']:.2f}" in row
    assert f"{first['ratio']:.2f}" in row
    # the source's page has no such card
    assert 'id="redraw-noise"' not in browser.get(f"/runs/{source.pk}/").content.decode()
