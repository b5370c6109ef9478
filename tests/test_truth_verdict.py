"""bench/truth_verdict.py: the verdict's figures against the committed shapes truth."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("truth_verdict", ROOT / "bench" / "truth_verdict.py")
verdict_bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(verdict_bench)


def test_split_halves_agree_fully_on_a_noise_free_truth_and_not_on_a_reversed_one():
    ranks = np.arange(5, dtype=float)
    assert verdict_bench.split_half_tau(np.stack([ranks] * 4)) == pytest.approx(1.0)
    assert verdict_bench.split_half_tau(np.stack([ranks, ranks, -ranks, -ranks])) < 0.5
    assert verdict_bench.split_half_tau(np.stack([ranks])) is None


def test_a_table_made_of_the_truths_own_means_ranks_the_truth():
    from ponas.audit import load_truth_file

    truth = load_truth_file(verdict_bench.TRUTH, min_seeds=3)
    table = verdict_bench.quick_table(truth)
    rows = verdict_bench.verdict([table], truth, n_boot=50)
    scored = [r for r in rows if "tau_table" in r]
    assert scored, rows
    for r in scored:
        assert r["tau_table"] > r["tau_macs"]  # a table of the truth's own marginals
        assert r["pick"] is not None and len(r["pick"]) == len(truth["doc"]["layers"])
