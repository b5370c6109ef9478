"""A device profile that no worker takes (its queue has no consumer) holds one of the user's
profile slots: the run page shows it being timed with a Cancel button, which cancels it."""

from __future__ import annotations

import pytest

from tests.web.helpers import make_finished_run
from webapp.runs import services
from webapp.runs.models import DeviceProfile, Status

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_a_waiting_profile_is_cancelled_from_the_run_page(
    django_user_model, live_server, chromium, settings, tmp_path
):
    settings.MEDIA_ROOT = tmp_path / "media"
    ada = django_user_model.objects.create_user("ada", password="ada-password-1")
    run = make_finished_run(ada)
    profile = services.start_profile(run, "gpu", ada)  # no worker: it stays queued
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
    cancel = page.locator("#profile-cancel")
    cancel.wait_for(state="visible")
    assert "timing the blocks on a gpu worker" in page.inner_text("#profile-status")
    cancel.click()
    cancel.wait_for(state="hidden")
    assert DeviceProfile.objects.get(pk=profile.pk).status == Status.CANCELLED
    assert page.inner_text("#profile-status") == ""
    assert errors == []
