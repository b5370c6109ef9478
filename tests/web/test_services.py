"""The web app sends the workers their tasks by name: it imports nothing from tasks/, and every
name it sends is one the workers register."""

from __future__ import annotations

import ast
from pathlib import Path

from django.conf import settings

from webapp.celery import app
from webapp.runs import services

ROOT = Path(__file__).resolve().parents[2]


def test_the_web_app_never_imports_the_tasks():
    for path in (ROOT / "webapp").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not any(n == "tasks" or n.startswith("tasks.") for n in names), path


def test_every_task_the_web_app_sends_is_registered_by_the_workers():
    app.loader.import_default_modules()  # what a worker imports (the app's ``include``)
    sent = [services.RUN_SEARCH, services.BUILD_DEPLOYMENT]
    sent += [entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()]
    assert all(name in app.tasks for name in sent), sorted(n for n in sent if n not in app.tasks)
