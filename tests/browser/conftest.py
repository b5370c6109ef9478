"""Headless Chromium for the browser tests: Debian's ``chromium`` driven by Playwright.

No browser is downloaded: Playwright launches ``/usr/bin/chromium`` (``.ci/run`` installs it
with apt). ``CHROMIUM`` overrides the path.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.db import connections

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
# Every run writes its screenshots under var/ (ignored); `make screenshots` refreshes the ones
# kept in the repository (test-artifacts/screenshots/), so a test run leaves the tree clean.
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = Path(
    os.environ.get("PONAS_SCREENSHOTS", ROOT / "var" / "test-artifacts" / "screenshots")
)


@pytest.fixture
def chromium(monkeypatch):
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[dev]'")
    if not CHROMIUM.exists():
        reason = f"needs Chromium at {CHROMIUM} (apt-get install chromium; .ci/run does)"
        if os.environ.get("CI"):  # CI installs it: a missing browser there is a failure
            pytest.fail(reason)
        pytest.skip(reason)
    # Playwright's sync API keeps an asyncio loop running in this thread; the ORM calls the
    # test makes meanwhile are ordinary blocking calls, which Django would otherwise refuse.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            yield browser
        finally:
            browser.close()
            # With a loop running, Django keeps this thread's connections per context: close
            # them here, or the test database cannot be dropped at the end of the session.
            connections.close_all()


def save_screenshot(page, name: str, full_page: bool = True) -> Path:
    """A PNG under test-artifacts/screenshots/, reduced to 256 colours (small enough to keep
    in the repository)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page, animations="disabled")
    try:
        from PIL import Image
    except ImportError:
        return path
    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=256, method=Image.Quantize.FASTOCTREE)
    small.save(path, optimize=True)
    return path
