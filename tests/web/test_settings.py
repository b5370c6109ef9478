"""Settings from the environment: the server refuses to start without a secret in production."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
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
