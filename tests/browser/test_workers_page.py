"""The Workers page and the run page's queue notice in a real browser, with real workers: a
worker on `default` only shows on the Workers page with its queues; a run sent to `gpu` says
that no live worker consumes that queue and how to start one; once a `gpu` worker starts, the
run page's badge and notices follow the run live (no reload)."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import pytest

from tests.web.helpers import make_run
from tests.web.workers import Workers
from webapp.runs import services
from webapp.runs.models import Worker

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CONFIG = {"epochs": 40, "finetune_steps": 3, "suffix_samples": 1, "bn_batches": 1}
CONFIG.update(eval_batches=1, input_size=8)


def wait_registered(pool: Workers, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not Worker.objects.filter(name__in=pool.names).count() == len(pool.names):
        assert time.monotonic() < deadline, pool.output()
        pool.check_alive()
        time.sleep(0.2)


def test_the_workers_page_and_a_run_waiting_for_a_worker_on_its_queue(
    django_user_model, live_server, chromium, settings, tmp_path
):
    settings.MEDIA_ROOT = tmp_path / "media"
    ada = django_user_model.objects.create_user("ada", password="ada-password-1")
    for folder in ("default", "gpu"):
        (tmp_path / folder).mkdir()
    pools = [Workers(1, tmp_path / "default", queues="default")]
    try:
        wait_registered(pools[0])
        page = chromium.new_context(viewport={"width": 1280, "height": 860}).new_page()
        page.set_default_timeout(30_000)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(live_server.url + "/accounts/login/")
        page.fill('input[name="username"]', "ada")
        page.fill('input[name="password"]', "ada-password-1")
        page.click('button[type="submit"]')
        page.wait_for_url(live_server.url + "/")

        page.click("nav.mainnav >> text=Workers")
        page.wait_for_url("**/workers/")
        row = page.locator('tr[data-worker="w1@test"]')
        assert "default" in row.inner_text() and "CPU" in row.inner_text()
        idle = page.locator('[data-idle-queue="gpu"]').inner_text()
        assert "No live worker consumes queue gpu" in idle
        assert "celery -A webapp worker -Q gpu -P solo" in idle

        # (stored here, its task sent once the gpu worker runs: starting a pool purges queues)
        run = make_run(ada, name="waits", config=CONFIG, queue="gpu")
        page.goto(f"{live_server.url}/runs/{run.pk}/")
        assert urlsplit(page.url).path == f"/runs/{run.pk}/"
        assert page.locator("h1 .badge").text_content().strip() == "queued"
        notice = page.locator("#run-waiting").inner_text()
        assert "No live worker consumes queue gpu" in notice
        assert "celery -A webapp worker -Q gpu -P solo" in notice
        page.evaluate("window.notReloaded = true")

        pools.append(Workers(1, tmp_path / "gpu", queues="gpu"))
        services.send_search(run.pk, run.attempt, run.queue)
        page.locator("h1 .badge", has_text="running").wait_for(timeout=120_000)
        assert page.evaluate("window.notReloaded === true")  # updated in place
        assert page.locator("#run-waiting").count() == 0  # a task of it runs now
        assert page.locator("[data-action=cancel]").count() == 1
        assert not errors, errors
    finally:
        for pool in pools:
            pool.stop()
