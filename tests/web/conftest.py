"""Fixtures of the service tests: users with API tokens, and runs with a stored table."""

from __future__ import annotations

import os
import shutil

import pytest
from django.conf import settings as django_settings
from django.core.cache import cache
from rest_framework.test import APIClient

from tests.web.helpers import client_for, make_finished_run
from webapp.runs.models import SearchRun


@pytest.fixture(autouse=True)
def _service_settings(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    cache.clear()  # the sign-in throttles count in the cache: each test starts at zero


@pytest.fixture(autouse=True, scope="session")
def _own_test_folder():
    """Each session keeps its SQLite file and broker folder in var/test/<pid>/; folders of
    sessions that are gone are removed (a folder can outlive its session: SQLite's WAL files,
    the broker's files written at exit)."""
    for folder in django_settings.TEST_DIR.parent.iterdir():
        if folder != django_settings.TEST_DIR and not _alive(folder.name):
            shutil.rmtree(folder, ignore_errors=True)
    yield
    shutil.rmtree(django_settings.TEST_DIR / "broker", ignore_errors=True)


def _alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        pass
    return True


@pytest.fixture
def api(alice) -> APIClient:
    """Alice's API client (token authentication, as a script would use it)."""
    return client_for(alice)


@pytest.fixture
def finished_run(alice) -> SearchRun:
    return make_finished_run(alice)
