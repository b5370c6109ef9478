"""The committed shapes ground truth (bench/data/shapes-truth/) and the script that makes it."""

from __future__ import annotations

import dataclasses
import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import kendalltau

from ponas.audit import load_truth_file

ROOT = Path(__file__).resolve().parents[1]
TRUTH = ROOT / "bench" / "data" / "shapes-truth" / "shapes-truth-v1.json"
sys.path.insert(0, str(ROOT / "bench"))
import shapes_truth  # noqa: E402


@pytest.fixture(scope="module")
def doc() -> dict:
    return json.loads(TRUTH.read_text())


def test_committed_file_is_complete(doc):
    assert doc["format"] == "ponas-truth/1" and doc["preset"] == "shapes"
    fields = {f.name for f in dataclasses.fields(shapes_truth.TruthRecipe)}
    assert set(doc["recipe"]) == fields  # every recipe field stored, nothing else
    assert doc["recipe"]["train_images"] is None and doc["recipe"]["test_images"] is None
    assert len(doc["seeds"]) >= 3
    assert doc["data"]["train_images"] == 9000 and doc["data"]["test_images"] == 4000
    from ponas.space import load_space

    _, fingerprint, layers = shapes_truth.space_record(load_space("shapes"))
    assert doc["space_fingerprint"] == fingerprint and doc["layers"] == layers
    assert len(doc["networks"]) >= 3
    for n in doc["networks"]:
        assert len(n["acc"]) == len(doc["seeds"]) >= 3, n["choices"]
        assert all(0 < a <= 1 for a in n["acc"])
        band = doc["pool"]["budgets"][n["budget"]]["band"]
        if n["role"] == "drawn":
            assert band[0] <= n["macs"] <= band[1]


def test_pool_is_the_documented_draw(doc):
    """Every drawn network is where the documented draw puts it (the fidelity bench's pools
    first), so the file can be extended and compared with bench/table_fidelity.py."""
    from ponas.space import load_space

    space = load_space("shapes")
    budgets = shapes_truth.draw_pool(space, 30)
    for n in doc["networks"]:
        if n["role"] == "drawn":
            cols = tuple(space.candidates.index(c) for c in n["choices"])
            assert cols in budgets[n["budget"]]["pool"]


def test_agreement_is_recomputed_from_the_accuracies(doc):
    seeds = doc["seeds"]
    for fig in doc["agreement"]:
        nets = [
            n
            for n in doc["networks"]
            if n["budget"] == fig["budget_index"] and n["role"] == "drawn"
        ]
        assert fig["networks"] == len(nets)
        if len(nets) < 2:
            continue
        acc = np.asarray([n["acc"] for n in nets]).T
        for a, b in itertools.combinations(range(len(seeds)), 2):
            mine = kendalltau(acc[a], acc[b]).statistic
            assert fig["tau"][f"{seeds[a]}-{seeds[b]}"] == pytest.approx(mine, abs=1e-9)
        assert fig["network_sd"] == pytest.approx(acc.mean(axis=0).std(ddof=1), abs=1e-12)


def test_loader_reads_it(doc):
    truth = load_truth_file(TRUTH, min_seeds=3)
    assert truth["seeds"] == doc["seeds"]
    assert sum(len(b["pool"]) for b in truth["budgets"]) == sum(
        n["role"] == "drawn" for n in doc["networks"]
    )
    for b in truth["budgets"]:
        assert b["acc"].shape == (len(doc["seeds"]), len(b["pool"]))
        for choices, mean in zip(b["pool"], b["mean"], strict=True):
            assert mean == pytest.approx(np.mean(truth["accuracy"][tuple(choices)]))


def test_loader_refuses_a_malformed_file(tmp_path):
    bad = tmp_path / "t.json"
    bad.write_text(json.dumps({"format": "ponas-truth/1", "preset": "shapes"}))
    with pytest.raises(ValueError, match="missing"):
        load_truth_file(bad)
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="cannot read"):
        load_truth_file(bad)


def test_quick_run_writes_and_resumes(tmp_path):
    out = tmp_path / "truth.json"
    cmd = [sys.executable, str(ROOT / "bench" / "shapes_truth.py"), "--quick", "--out", str(out)]
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    first = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    made = json.loads(out.read_text())
    assert [len(n["acc"]) for n in made["networks"]] == [2, 2]  # 2 networks x 2 seeds
    assert "seed 1" in first.stderr
    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "seed" not in again.stderr  # nothing left to train
    assert json.loads(out.read_text())["networks"] == made["networks"]
    other = subprocess.run([*cmd, "--lr", "0.05"], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=300)  # fmt: skip
    assert other.returncode == 2 and "another recipe" in other.stderr
