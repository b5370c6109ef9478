"""The web server runs without torch: listing runs, showing a table and answering a budget
preview are plain Python and numpy, so a web process installed with ``pip install
ponas-studio[web]`` neither needs nor loads the CUDA wheels (issue 19, item 4)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Run in a fresh interpreter: this test process has long imported torch for other tests.
SERVE = """
import json, sys
import django
django.setup()
import webapp.urls  # the whole URLconf: every view, serializer and form module
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
from ponas.cost import cost_tables
from ponas.space import load_space
from ponas.table import AccuracyTable
from webapp.runs.models import SearchRun, Stage, Status
from webapp.runs.tables import store_table

call_command("migrate", verbosity=0)
user = get_user_model().objects.create_user("ana", password="not-used-here-7")
run = SearchRun.objects.create(
    owner=user, name="digits search", preset="digits", status=Status.SUCCEEDED,
    stage=Stage.DONE, progress=1.0,
)
space = load_space("digits")
accuracy = [
    [None if m is None else 0.5 + 0.01 * c for c, m in enumerate(row)]
    for row in cost_tables(space)[0]["macs"]
]
store_table(run, AccuracyTable.build(space, accuracy, [space.candidates[0]] * space.num_layers))
client = Client()
client.force_login(user)
answers = {
    "runs page": client.get("/"),
    "run page": client.get(f"/runs/{run.pk}/"),
    "new search page": client.get("/runs/new/"),
    "workers page": client.get("/workers/"),
    "runs list": client.get("/api/runs/"),
    "table": client.get(f"/api/runs/{run.pk}/table/"),
    "preview": client.get(f"/api/runs/{run.pk}/preview/?max_macs=1G"),
    "plan": client.post(
        "/api/runs/plan/", {"preset": "digits", "config": {"epochs": 3}}, "application/json"
    ),
}
print(json.dumps({
    "status": {name: r.status_code for name, r in answers.items()},
    "listed": [r["name"] for r in answers["runs list"].json()["results"]],
    "preview": answers["preview"].json(),
    "loaded": sorted(
        m for m in ("torch", "torchvision", "onnx", "onnxruntime", "onnxscript") if m in sys.modules
    ),
}))
"""


def test_web_server_lists_runs_and_previews_budgets_without_loading_torch(tmp_path):
    environ = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DATABASE_NAME")}
    done = subprocess.run(
        [sys.executable, "-c", SERVE],
        cwd=ROOT,
        env={
            **environ,
            "PONAS_VAR_DIR": str(tmp_path),  # its own SQLite file, not the tests' database
            "DJANGO_SETTINGS_MODULE": "webapp.settings",
            "DEBUG": "1",
            "ALLOWED_HOSTS": "testserver",
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["status"] == {
        "runs page": 200,
        "run page": 200,
        "new search page": 200,
        "workers page": 200,
        "runs list": 200,
        "table": 200,
        "preview": 200,
        "plan": 200,
    }
    assert answer["listed"] == ["digits search"]
    assert len(answer["preview"]["choices"]) == 6  # the digits space's layers, one block each
    assert answer["loaded"] == []


def test_solver_table_and_config_modules_import_without_torch():
    code = (
        "import sys\n"
        "import ponas.solve, ponas.table, ponas.plan, ponas.units, ponas.catalog\n"
        "from ponas.search import ConfigError, SearchConfig, resolve\n"
        "resolve('digits', {'epochs': 3})\n"
        "print('torch' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "False"
