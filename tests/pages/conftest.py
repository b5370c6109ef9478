"""Fixtures of the page tests: a browser-like client signed in as alice (tests/conftest.py)."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.test import Client


@pytest.fixture(autouse=True)
def _service_settings(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    cache.clear()  # the sign-in throttles count in the cache: each test starts at zero


@pytest.fixture
def browser(alice) -> Client:
    """Alice in a browser: session cookie, CSRF checks on."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    return client
