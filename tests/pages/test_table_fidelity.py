"""The run page says what an accuracy-table entry is and how certain it is, with the run's
own numbers, and marks the layers whose best two blocks are within noise (issue 18)."""

from __future__ import annotations

import html as html_lib
import re

import pytest
from django.utils import timezone

from ponas.table import AccuracyTable
from tests.web.helpers import digits_table, make_run, uncertain_table
from webapp.runs.models import Stage, Status
from webapp.runs.tables import store_table

pytestmark = pytest.mark.django_db


def finished(owner, table, **fields):
    now = timezone.now()
    run = make_run(owner, Status.SUCCEEDED, stage=Stage.DONE, started=now, finished=now, **fields)
    store_table(run, table)
    return run


def text_of(page: str, element_id: str) -> str:
    """The text a user reads in the element with this id (tags dropped, spaces collapsed)."""
    match = re.search(rf'<(\w+)[^>]*id="{element_id}"[^>]*>(.*?)</\1>', page, re.S)
    assert match, f"no #{element_id} on the page"
    text = re.sub(r"<[^>]+>", "", match[2])
    return re.sub(r"\s+", " ", html_lib.unescape(text)).strip()


def test_user_reads_what_an_entry_is_how_many_suffixes_and_images_scored_it(browser, alice):
    run = finished(alice, uncertain_table(suffixes=6))
    page = browser.get(f"/runs/{run.pk}/").content.decode()
    assert text_of(page, "table-fidelity") == (
        "Each cell is the validation accuracy of the network with this block at this layer, "
        "the layers before it fixed to the chosen path and the layers after it sampled "
        "(averaged over 6 sampled suffixes, on 300 held-out images, the whole validation "
        "split). ± is its standard error over those suffixes (hover a cell)."
    )


def test_a_subset_of_the_validation_split_says_of_how_many_and_how_drawn(browser, alice):
    d = uncertain_table().to_dict()
    d["meta"]["validation"] = {
        "images": 256,
        "of": 1000,
        "classes": 10,
        "drawn": "stratified by class, seeded by the search seed",
    }
    run = finished(alice, AccuracyTable.from_dict(d))
    page = browser.get(f"/runs/{run.pk}/").content.decode()
    assert (
        "(averaged over 4 sampled suffixes, on 256 of 1000 held-out images, stratified by "
        "class, seeded by the search seed)." in text_of(page, "table-fidelity")
    )


def test_a_table_scored_by_likelihood_says_so(browser, alice):
    d = uncertain_table().to_dict()
    d["meta"]["config"] = {**d["meta"].get("config", {}), "score": "likelihood"}
    run = finished(alice, AccuracyTable.from_dict(d))
    page = browser.get(f"/runs/{run.pk}/").content.decode()
    assert text_of(page, "table-fidelity").startswith(
        "Each cell is the validation likelihood (exp of minus the cross-entropy: the geometric "
        "mean of the probability given to the true class) of the network with this block"
    )


def test_user_sees_which_layers_the_table_cannot_separate(browser, alice):
    table = uncertain_table(close_layer=2)
    run = finished(alice, table)
    page = browser.get(f"/runs/{run.pk}/").content.decode()
    assert "are within noise" in text_of(page, "close-calls-head")
    items = re.findall(r'<li data-layer="(\d+)">(.*?)</li>', page, re.S)
    assert [layer for layer, _ in items] == ["2"]  # only the layer made close
    row = table.accuracy[2]
    best, second = sorted((j for j, a in enumerate(row) if a is not None), key=lambda j: -row[j])[
        :2
    ]
    err = table.stderr[2][best]
    assert re.sub(r"\s+", " ", html_lib.unescape(items[0][1])).strip() == (
        f"Layer 2 ≈ within noise: {table.candidates[best]} {100 * row[best]:.2f}% "
        f"± {100 * err:.2f} vs {table.candidates[second]} {100 * row[second]:.2f}% "
        f"± {100 * err:.2f} (apart by {100 * (row[best] - row[second]):.2f} pts, combined "
        f"error {100 * 2**0.5 * err:.2f} pts)"
    )


def test_a_table_without_standard_errors_says_its_uncertainty_was_not_recorded(browser, alice):
    # an older table: no stderr and no settings in its meta; the run's settings say 1 suffix
    run = finished(alice, digits_table(), config={"suffix_samples": 1})
    page = browser.get(f"/runs/{run.pk}/").content.decode()
    assert text_of(page, "table-fidelity").endswith(
        "the layers after it sampled (averaged over 1 sampled suffix). Its uncertainty was not "
        "recorded: one suffix gives no spread to measure it from."
    )
    assert 'id="close-calls' not in page

    run = finished(alice, digits_table(seed=1))  # the digits preset's default: 4 suffixes
    page = browser.get(f"/runs/{run.pk}/").content.decode()
    assert text_of(page, "table-fidelity").endswith(
        "(averaged over 4 sampled suffixes). Its uncertainty was not recorded: this table "
        "has no standard errors."
    )


def test_a_table_whose_layers_are_all_separated_says_so(browser, alice):
    d = uncertain_table().to_dict()
    d["stderr"] = [[None if a is None else 1e-6 for a in row] for row in d["accuracy"]]
    run = finished(alice, AccuracyTable.from_dict(d))
    page = browser.get(f"/runs/{run.pk}/").content.decode()
    assert text_of(page, "close-calls-head") == (
        "In every layer the best block is ahead of the second-best by more than their "
        "combined standard error."
    )


def test_user_sees_which_rows_separate_their_blocks_against_the_noise_budget(browser, alice):
    from ponas import noise

    table = uncertain_table(close_layer=2)
    run = finished(alice, table)
    page = browser.get(f"/runs/{run.pk}/").content.decode()
    items = dict(re.findall(r'<li data-noise-layer="(\d+)">(.*?)</li>', page, re.S))
    rows = noise.table_rows(table)
    assert [int(k) for k in items] == [r["layer"] for r in rows] and rows
    for r in rows:
        verdict = "separates its blocks" if r["separates"] else "within noise"
        assert re.sub(r"\s+", " ", html_lib.unescape(items[str(r["layer"])])).strip() == (
            f"Layer {r['layer']}: spread {100 * r['spread']:.2f} pts, error "
            f"{100 * r['error']:.2f} pts, ratio {r['ratio']:.2f}: {verdict}"
        )
    assert f"at most {noise.BUDGET} times the spread" in page
