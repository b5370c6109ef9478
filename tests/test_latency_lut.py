"""Latency budgets end to end on the command line: a device's lookup table (``ponas profile``)
added to any table of the same space (``--lut``), validated, and solved exactly."""

from __future__ import annotations

import json
import random

import pytest
import torch

from ponas.cli import main
from ponas.cost import (
    context_rounds,
    lut_fit,
    prediction_quality,
    profile_latency,
    with_latency,
)
from ponas.space import load_space
from ponas.table import AccuracyTable
from tests.test_deploy_solver import NAMES, all_networks, fits, make_table

LAYERS, WIDTH = 4, 4


@pytest.fixture(autouse=True)
def _one_thread():
    """Timing with one thread: on a busy 2-core machine two threads wait for each other at every
    op (a digits profile then takes a minute instead of a second)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small_table() -> AccuracyTable:
    rng = random.Random(7)
    accuracy = [
        [None if (i, j) == (1, 2) else round(rng.uniform(0.5, 0.9), 3) for j in range(WIDTH)]
        for i in range(LAYERS)
    ]
    macs = [[None if a is None else rng.randint(10, 99) for a in row] for row in accuracy]
    return make_table(accuracy, macs, space={"name": "tiny"})


def small_lut(**changes) -> dict:
    rng = random.Random(11)
    lut = {
        "format": "ponas-latency/1",
        "space": "tiny",
        "device": "test board",
        "batch": 1,
        "candidates": NAMES[:WIDTH],
        "base_ms": 1.5,
        "layers": [[round(rng.uniform(0.2, 3.0), 3) for _ in range(WIDTH)] for _ in range(LAYERS)],
    }
    lut["layers"][1][2] = None  # not allowed there, as in the table
    lut.update(changes)
    return lut


def write(tmp_path, table: AccuracyTable, lut: dict) -> tuple[str, str]:
    table.save(tmp_path / "table.json")
    (tmp_path / "lut.json").write_text(json.dumps(lut))
    return str(tmp_path / "table.json"), str(tmp_path / "lut.json")


def deploy(capsys, *args: str) -> tuple[int, dict | None, str]:
    code = main(["deploy", *args])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 and out.startswith("{") else None), err


def test_deploy_with_a_lut_chooses_the_exact_optimum_under_a_latency_budget(tmp_path, capsys):
    table, lut = small_table(), small_lut()
    t, lut_path = write(tmp_path, table, lut)
    brute_table = with_latency(table, lut)
    nets = list(all_networks(brute_table))
    latencies = sorted(cost["latency_ms"] for _, _, cost in nets)
    for q in (0.0, 0.1, 0.3, 0.5, 0.8, 1.0):
        budget = latencies[int(q * (len(latencies) - 1))]
        code, result, err = deploy(
            capsys, "--table", t, "--lut", lut_path, "--max-latency-ms", str(budget), "--json"
        )
        assert code == 0, err
        best = max(score for _, score, cost in nets if fits(cost, {"latency_ms": budget}))
        assert result["score"] == pytest.approx(best, abs=1e-12)
        assert result["cost"]["latency_ms"] <= budget + 1e-9
        cols = [NAMES.index(c) for c in result["choices"]]
        assert result["cost"]["latency_ms"] == pytest.approx(
            lut["base_ms"] + sum(lut["layers"][i][j] for i, j in enumerate(cols))
        )


def test_an_infeasible_latency_budget_names_the_fastest_network(tmp_path, capsys):
    t, lut_path = write(tmp_path, small_table(), small_lut())
    code, _, err = deploy(capsys, "--table", t, "--lut", lut_path, "--max-latency-ms", "0.5")
    assert code == 2 and err.count("\n") == 1 and "latency" in err and "ms" in err


def test_without_a_lut_a_latency_budget_says_the_table_has_none(tmp_path, capsys):
    t, _ = write(tmp_path, small_table(), small_lut())
    code, _, err = deploy(capsys, "--table", t, "--max-latency-ms", "5")
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("ponas: error: --max-latency-ms: this table has no latency; add --lut")


@pytest.mark.parametrize(
    "changes, message",
    [
        (
            {"space": "imagenet"},
            "latency table was measured for the 'imagenet' space, the table is of the 'tiny' space",
        ),
        ({"candidates": NAMES[1 : WIDTH + 1]}, "latency table was measured for candidates"),
        ({"layers": [[1.0] * WIDTH] * (LAYERS - 1)}, "latency table has 3 layers, the table has 4"),
        (
            {"layers": [[None] * WIDTH] * LAYERS},
            "latency table has no time for layer 0, 'e3_k3', which the table allows",
        ),
        ({"base_ms": -1}, "base_ms is -1"),
    ],
)
def test_a_lut_of_another_space_is_refused_in_one_line(tmp_path, capsys, changes, message):
    t, lut_path = write(tmp_path, small_table(), small_lut(**changes))
    code, _, err = deploy(capsys, "--table", t, "--lut", lut_path, "--max-latency-ms", "5")
    assert code == 2 and err.count("\n") == 1
    assert message in err


def test_a_file_that_is_not_a_lut_is_refused_in_one_line(tmp_path, capsys):
    t, _ = write(tmp_path, small_table(), small_lut())
    code, _, err = deploy(capsys, "--table", t, "--lut", t)
    assert code == 2 and "not a latency table (expected format 'ponas-latency/1'" in err
    code, _, err = deploy(capsys, "--table", t, "--lut", str(tmp_path / "none.json"))
    assert code == 2 and "no such latency table file" in err


def test_a_measured_lut_fits_its_space_and_not_another_resolution():
    space = load_space("digits")
    lut = profile_latency(space, "cpu", batch=2, warmup=1, repeats=2, check=3)
    assert [len(row["choices"]) for row in lut["check"]] == [space.num_layers] * 3
    assert all(row["measured_ms"] > 0 and row["predicted_ms"] > 0 for row in lut["check"])
    accuracy = [
        [0.5 if space.allowed(i, c) else None for c in space.candidates]
        for i in range(space.num_layers)
    ]
    path = [space.allowed_candidates(i)[0] for i in range(space.num_layers)]
    table = with_latency(AccuracyTable.build(space, accuracy, path), lut)
    assert table.meta["latency_device"] == lut["device"]
    overhead, scale = lut_fit(lut)
    assert lut["base_ms"] > 0 and scale > 0
    assert table.base_cost["latency_ms"] == pytest.approx(
        max(0.0, scale * lut["base_ms"] + overhead)
    )
    assert all(
        (v is None) == (not space.allowed(i, c))
        for i, row in enumerate(table.cost["latency_ms"])
        for c, v in zip(space.candidates, row, strict=True)
    )
    bigger = space.replace(input_size=24)
    other = AccuracyTable.build(bigger, accuracy, path)
    with pytest.raises(ValueError, match="its 'input_size' is 16, the table's is 24"):
        with_latency(other, lut)


def test_prediction_quality_is_the_mean_absolute_error_and_the_rank_correlation():
    rows = [
        {"predicted_ms": p, "measured_ms": m, "error_pct": 100 * (p - m) / m}
        for p, m in [(10, 10), (22, 20), (27, 30), (45, 40)]
    ]
    q = prediction_quality(rows)
    assert q["mean_abs_error_pct"] == pytest.approx((0 + 10 + 10 + 12.5) / 4)
    assert q["rank_correlation"] == pytest.approx(1.0)
    rows[0]["predicted_ms"] = 50  # now predicted the slowest
    assert prediction_quality(rows)["rank_correlation"] == pytest.approx(-0.2)


@pytest.mark.parametrize("preset", ["digits", "imagenet"])
def test_the_context_networks_time_every_allowed_block_of_every_layer(preset):
    space = load_space(preset)
    rounds = context_rounds(space)
    assert len(rounds) == max(len(space.allowed_candidates(i)) for i in range(space.num_layers))
    for i in range(space.num_layers):
        assert {arch[i] for arch in rounds} == set(space.allowed_candidates(i))


def test_search_with_a_lut_writes_a_table_with_that_devices_latency(tmp_path, capsys):
    space = load_space("digits").replace(input_size=8)
    lut = profile_latency(space, "cpu", batch=1, warmup=1, repeats=2)
    (tmp_path / "lut.json").write_text(json.dumps(lut))
    tiny = ["epochs=1", "finetune_steps=1", "suffix_samples=1", "bn_batches=1", "eval_batches=1"]
    args = ["search", "--preset", "digits", "--out", str(tmp_path / "run"), "--seed", "0"]
    args += ["--set", "input_size=8", "--lut", str(tmp_path / "lut.json")]
    for item in tiny:
        args += ["--set", item]
    assert main(args) == 0, capsys.readouterr().err
    table = AccuracyTable.load(tmp_path / "run" / "table.json")
    assert table.meta["latency_device"] == lut["device"]
    overhead, scale = lut_fit(lut)
    assert table.base_cost["latency_ms"] == pytest.approx(
        max(0.0, scale * lut["base_ms"] + overhead)
    )


def test_search_refuses_a_file_that_is_not_a_lut_before_it_starts(tmp_path, capsys):
    (tmp_path / "lut.json").write_text("{}")
    args = ["search", "--preset", "digits", "--out", str(tmp_path / "run")]
    assert main([*args, "--lut", str(tmp_path / "lut.json")]) == 2
    assert "not a latency table" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
