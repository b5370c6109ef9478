"""The run page's "Audit this table" in a real browser: the cost estimate shows before an audit
starts and follows the fields; a finished audit shows per budget its chart (the drawn networks
and the deployed one), tau with intervals for the table and for MACs, the seeds' agreement and
the report's sentence; an audit started from the form appears with its progress and cancels."""

from __future__ import annotations

import random

import pytest
from django.utils import timezone

from ponas.audit import Recipe, audit_plan, run_audit
from tests.browser.conftest import save_screenshot
from tests.web.helpers import digits_table, make_finished_run
from webapp.runs.models import Audit, Status

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

BUDGETS = [1.4e6, 1.9e6]


def finished_audit(run, user) -> Audit:
    """A succeeded audit of ``run`` whose report ponas.audit computed from made-up truths (a
    noisy function of the table's score: what a worker would have measured)."""
    table = digits_table()
    rng = random.Random(0)

    def truth(space, names, data, dataset, recipe, seed=0) -> float:
        score = sum(table.accuracy[i][table.candidates.index(c)] for i, c in enumerate(names))
        return min(1.0, max(0.0, score / 6 + rng.gauss(0, 0.02)))

    report = run_audit(table, BUDGETS, 5, Recipe(epochs=1), seeds=2, data=object(), train=truth)
    pools, todo = audit_plan(table, BUDGETS, 5, Recipe(epochs=1), seeds=2)
    now = timezone.now()
    return Audit.objects.create(
        run=run,
        requested_by=user,
        budgets=BUDGETS,
        networks=5,
        epochs=1,
        seeds=2,
        total=len(todo),
        trained=len(todo),
        results=report,
        status=Status.SUCCEEDED,
        started=now,
        finished=now,
    )


def test_the_run_page_shows_a_finished_audit_and_prices_a_new_one(
    django_user_model, live_server, chromium, settings, tmp_path
):
    settings.MEDIA_ROOT = tmp_path / "media"
    ada = django_user_model.objects.create_user("ada", password="ada-password-1")
    run = make_finished_run(ada)
    audit = finished_audit(run, ada)
    report = audit.results

    page = chromium.new_context(viewport={"width": 1280, "height": 860}).new_page()
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(live_server.url + "/accounts/login/")
    page.fill('input[name="username"]', "ada")
    page.fill('input[name="password"]', "ada-password-1")
    page.click('button[type="submit"]')
    page.wait_for_url(live_server.url + "/")
    page.goto(f"{live_server.url}/runs/{run.pk}/")

    card = page.locator(f'.audit[data-audit-id="{audit.pk}"]')
    card.locator(".audit-chart").first.wait_for()
    assert card.get_attribute("data-status") == "succeeded"
    budgets = card.locator(".audit-budget")
    assert budgets.count() == 2
    for i, fig in enumerate(report["budgets"]):
        box = budgets.nth(i)
        assert box.locator("h3").inner_text().startswith(("1.40M MACs", "1.90M MACs")[i])
        assert box.locator(".audit-sentence").inner_text() == fig["sentence"]
        lo, hi = fig["tau_table_interval"]
        assert box.locator('[data-figure="tau-table"]').inner_text() == (
            f"{fig['tau_table']:.2f} [{lo:.2f}, {hi:.2f}]"
        )
        lo, hi = fig["tau_macs_interval"]
        assert box.locator('[data-figure="tau-macs"]').inner_text() == (
            f"{fig['tau_macs']:.2f} [{lo:.2f}, {hi:.2f}]"
        )
        agreement = box.locator('[data-figure="seed-agreement"]').inner_text()
        assert agreement.startswith(f"tau {fig['seed_agreement']:.2f} between 2 seeds")
        # the chart: one point per drawn network at (score, truth), and the deployed network
        points = page.evaluate(
            "(i) => Chart.getChart(document.querySelectorAll('.audit-chart')[i]).data.datasets"
            ".map((d) => d.data.map((p) => [p.x, p.y]))",
            i,
        )
        assert points[0] == [list(p) for p in zip(fig["score"], fig["truth"], strict=True)]
        assert points[1] == [[fig["deployed_score"], fig["deployed_truth"]]]
    save_screenshot(page, "run-audit")

    # the estimate follows the fields before anything starts
    page.fill("#audit-budgets", "1.4M, 1.9M")
    page.fill("#audit-networks", "3")
    page.fill("#audit-epochs", "1")
    estimate = page.locator("#audit-estimate")
    page.wait_for_function("document.getElementById('audit-estimate').dataset.trainings")
    one = int(estimate.get_attribute("data-trainings"))
    assert estimate.inner_text().startswith(f"Cost: {one} trainings (6 drawn networks")
    page.fill("#audit-seeds", "2")
    page.wait_for_function(
        f"document.getElementById('audit-estimate').dataset.trainings === '{2 * one}'"
    )
    page.fill("#audit-budgets", "1.4M, lots")
    page.locator("#audit-error").wait_for()
    assert page.locator("#audit-error").inner_text() == (
        "budgets: budget 2: invalid budget 'lots': expected a positive number with an optional "
        "K, M or G suffix (e.g. 300M, 5.1m, 2e6, 20)"
    )

    # started from the form: it waits for a worker (none here), shows its progress, cancels
    page.fill("#audit-budgets", "1.4M, 1.9M")
    page.click("#audit-button")
    started = page.locator('.audit[data-status="queued"]')
    started.wait_for()
    assert Audit.objects.count() == 2
    new = Audit.objects.exclude(pk=audit.pk).get()
    assert (new.seeds, new.networks, new.epochs) == (2, 3, 1)
    assert started.locator(".audit-progress").inner_text() == f"0 of {new.total} trainings"
    # newest first
    assert page.locator(".audit").first.get_attribute("data-audit-id") == str(new.pk)
    started.locator("button", has_text="Cancel").click()
    page.locator(f'.audit[data-audit-id="{new.pk}"][data-status="cancelled"]').wait_for()
    assert Audit.objects.get(pk=new.pk).status == Status.CANCELLED
    assert not errors, errors
