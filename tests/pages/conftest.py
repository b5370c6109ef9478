"""Fixtures of the page tests: two users, a browser-like client signed in as the first."""

from __future__ import annotations

import pytest
from django.test import Client


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user("alice", password="alice-password-1")


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user("bob", password="bob-password-1")


@pytest.fixture
def browser(alice) -> Client:
    """Alice in a browser: session cookie, CSRF checks on."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    return client
