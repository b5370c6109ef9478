"""End to end through real Celery workers: a digits search from the API to a downloaded
network that ``ponas evaluate`` loads. Runs on PostgreSQL + Redis when ``DATABASE_URL`` and
``REDIS_URL`` are set (CI), on SQLite + the filesystem broker otherwise."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from rest_framework.test import APIClient
from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

from ponas.solve import solve
from ponas.table import AccuracyTable
from tests.web.workers import Workers, sequential_table
from webapp.runs.models import Artifact, SearchRun, TableEntry

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# 8x8 input (the digits are 8x8 scans): a whole search takes seconds on 2 CPU cores
TINY = {"epochs": 2, "finetune_steps": 3, "suffix_samples": 1, "bn_batches": 1, "eval_batches": 1}
TINY["input_size"] = 8


@pytest.fixture
def workers(request, tmp_path):
    started: list[Workers] = []

    def start(n: int) -> Workers:
        started.append(Workers(n, tmp_path))
        return started[-1]

    yield start
    for w in started:
        w.stop()


def token_client(django_user_model) -> APIClient:
    django_user_model.objects.create_user("ada", password="ada-password-1")
    client = APIClient()
    response = client.post(
        "/api/auth/token/", {"username": "ada", "password": "ada-password-1"}, format="json"
    )
    client.credentials(HTTP_AUTHORIZATION=f"Token {response.json()['token']}")
    return client


def wait_for(client: APIClient, url: str, workers: Workers, timeout: float = 240) -> dict:
    """Poll until the object is no longer queued or running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(url).json()
        if body["status"] not in ("queued", "running"):
            return body
        workers.check_alive()
        time.sleep(0.5)
    raise AssertionError(f"{url} still {body['status']} after {timeout} s:\n{workers.output()}")


def test_a_script_searches_deploys_and_evaluates_through_two_workers(
    django_user_model, workers, tmp_path
):
    pool = workers(2)
    api = token_client(django_user_model)

    # search
    response = api.post(
        "/api/runs/", {"name": "tiny", "preset": "digits", "config": TINY}, format="json"
    )
    assert response.status_code == 201, response.json()
    run_url = f"/api/runs/{response.json()['id']}/"
    body = wait_for(api, run_url, pool)
    assert body["status"] == "succeeded", f"{body}\n{pool.output()}"
    assert body["progress"] == 1.0
    assert body["stage"] == "done"
    assert [m["step"] for m in body["metrics"] if m["kind"] == "epoch"] == [1, 2]

    # the table served from the database is the one the search wrote
    run = SearchRun.objects.get(pk=body["id"])
    table = api.get(f"{run_url}table/").json()
    written = AccuracyTable.load(run.out_dir / "table.json")
    assert table == written.to_dict()
    assert body["path"] == written.path
    kinds = set(Artifact.objects.filter(run=run).values_list("kind", flat=True))
    assert kinds == {"table", "supernet", "checkpoint"}

    # both workers scored candidates of one layer
    by_layer: dict[int, set[str]] = {}
    for layer, worker in TableEntry.objects.filter(run=run).values_list("layer", "worker"):
        by_layer.setdefault(layer, set()).add(worker)
    assert any(len(w) == 2 for w in by_layer.values()), f"workers per layer: {by_layer}"
    assert set().union(*by_layer.values()) == set(pool.names)

    # Pareto frontier and a budget preview
    front = api.get(f"{run_url}pareto/?cost=macs").json()["points"]
    assert front and [p["cost"]["macs"] for p in front] == sorted(p["cost"]["macs"] for p in front)
    budget = front[len(front) // 2]["cost"]["macs"]
    preview = api.get(f"{run_url}preview/?max_macs={budget}").json()
    assert preview == solve(written, {"macs": float(budget)}).to_dict()
    assert preview["score"] == front[len(front) // 2]["score"]

    # deployment: build, download every format, evaluate the bundle
    response = api.post(
        "/api/deployments/",
        {"run": run.pk, "max_macs": budget, "finetune_epochs": 1},
        format="json",
    )
    assert response.status_code == 201, response.json()
    deployment = wait_for(api, f"/api/deployments/{response.json()['id']}/", pool)
    assert deployment["status"] == "succeeded", f"{deployment}\n{pool.output()}"
    assert deployment["choices"] == preview["choices"]
    assert 0.0 <= deployment["measured_accuracy"] <= 1.0
    assert set(
        Artifact.objects.filter(deployment_id=deployment["id"]).values_list("kind", flat=True)
    ) == {"pt", "pt2", "onnx", "model_card"}
    files = {}
    for fmt, suffix in [("pt", ".pt"), ("pt2", ".pt2"), ("onnx", ".onnx")]:
        response = api.get(deployment["downloads"][fmt])
        assert response.status_code == 200
        name = f"ponas-deployment-{deployment['id']}{suffix}"
        assert response["Content-Disposition"] == f'attachment; filename="{name}"'
        files[fmt] = tmp_path / name
        files[fmt].write_bytes(b"".join(response.streaming_content))
        assert files[fmt].stat().st_size > 1000
    # the run's TensorBoard events: its stage-1 epochs and table rows, the deployment's accuracy
    response = api.get(f"{run_url}tensorboard/")
    assert response.status_code == 200
    zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content))).extractall(tmp_path)
    events = EventMultiplexer(size_guidance={"scalars": 0})
    events.AddRunsFromDirectory(str(tmp_path / f"run-{run.pk}-tensorboard")).Reload()
    assert [e.step for e in events.Scalars(".", "epoch/train_loss")] == [1, 2]
    for layer, row in enumerate(written.accuracy):
        for candidate, accuracy in zip(written.candidates, row, strict=True):
            if accuracy is not None:
                logged = events.Scalars(".", f"table/layer_{layer}/{candidate}")
                assert [e.value for e in logged] == [pytest.approx(accuracy, abs=1e-6)]
    top1 = events.Scalars(f"deployment-{deployment['id']}", "deploy/top1")
    assert [e.value for e in top1] == [pytest.approx(deployment["measured_accuracy"], abs=1e-6)]

    config = tmp_path / "config.yml"
    config.write_text("datasets: digits\nbatch_size: 64\n")
    ponas = Path(sys.executable).with_name("ponas")
    done = subprocess.run(
        [ponas, "evaluate", "--cfg", config, "--model", files["pt"], "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["macs"] == deployment["cost"]["macs"]
    assert 0.0 <= result["top1"] <= 1.0


def test_a_cancelled_search_resumes_from_its_checkpoint_to_the_same_table(
    django_user_model, workers, tmp_path
):

    pool = workers(1)
    api = token_client(django_user_model)
    run_id = api.post("/api/runs/", {"preset": "digits", "config": TINY}, format="json").json()[
        "id"
    ]
    url = f"/api/runs/{run_id}/"
    deadline = time.monotonic() + 180
    while api.get(url).json()["current_layer"] < 2:  # two layers of stage 2 are done
        assert time.monotonic() < deadline, pool.output()
        pool.check_alive()
        time.sleep(0.2)
    assert api.post(f"{url}cancel/").status_code == 202
    body = wait_for(api, url, pool)
    assert body["status"] == "cancelled"
    run = SearchRun.objects.get(pk=run_id)
    assert (run.out_dir / "checkpoints" / "stage2.pt").exists()
    scored_before = TableEntry.objects.filter(run=run).count()

    assert api.post(f"{url}resume/").status_code == 202
    body = wait_for(api, url, pool)
    assert body["status"] == "succeeded", f"{body}\n{pool.output()}"
    entries = TableEntry.objects.filter(run=run)
    assert entries.count() == 39 > scored_before  # 6 layers x 6 or 7 candidates, none twice
    # stage 1 ran once: its epochs were not replayed (one point per epoch)
    assert [m["step"] for m in body["metrics"] if m["kind"] == "epoch"] == [1, 2]

    # the same table as one uninterrupted, sequential search with the same seed
    expected = sequential_table("digits", TINY, tmp_path / "sequential")
    served = AccuracyTable.from_dict(api.get(f"{url}table/").json())
    assert served.accuracy == expected.accuracy
    assert served.path == expected.path
