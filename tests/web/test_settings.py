"""Settings from the environment: production is the default (DEBUG off, a secret key
required), and local development says so explicitly (issue 17, finding 6)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    """``manage.py`` with the environment of a fresh production machine (no DEBUG, no
    SECRET_KEY; the tests' own are left out), plus ``env``."""
    environ = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DEBUG")}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_server_refuses_to_start_without_a_secret_key_when_debug_is_off():
    done = manage("check", DEBUG="0")
    assert done.returncode != 0
    assert "SECRET_KEY is not set: with DEBUG off the server needs a secret key" in done.stderr


def test_deploy_checks_pass_with_debug_off():
    done = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(50),
    )
    assert done.returncode == 0, done.stderr


def test_production_is_the_default_and_refuses_to_start_without_a_secret_key():
    done = manage("check")
    assert done.returncode != 0
    assert "SECRET_KEY is not set: with DEBUG off the server needs a secret key" in done.stderr


def test_deploy_checks_pass_with_the_production_defaults():
    done = manage(
        "check", "--deploy", "--fail-level", "WARNING", SECRET_KEY=secrets.token_urlsafe(50)
    )
    assert done.returncode == 0, done.stderr
    debug = manage(
        "shell",
        "-c",
        "from django.conf import settings; print(settings.DEBUG)",
        SECRET_KEY=secrets.token_urlsafe(50),
    )
    assert debug.stdout.strip().splitlines()[-1] == "False", debug.stderr


def test_make_run_sets_its_local_settings_explicitly():
    makefile = (ROOT / "Makefile").read_text()
    assert "DEBUG=$${DEBUG:-1} $(BIN)/python manage.py runlocal" in makefile
