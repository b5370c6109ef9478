import json
import random

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from ponas.cli import main
from ponas.cost import cost_tables, latency_error, network_cost, profile_latency
from ponas.network import RELEASED, Network
from ponas.space import load_space

PUBLISHED = {"PONASA": (326e6, 5.1e6), "PONASB": (349e6, 5.1e6), "PONASC": (376e6, 5.6e6)}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_released_networks_match_the_published_macs_and_params(name):
    cost = network_cost(load_space("imagenet"), RELEASED[name])
    macs, params = PUBLISHED[name]
    assert abs(cost.macs - macs) / macs < 0.015
    assert abs(cost.params - params) / params < 0.015


def measured(net, space):
    x = torch.randn(1, space.in_channels, space.input_size, space.input_size)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net.eval()(x)
    return counter.get_total_flops() // 2, sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("preset", ["digits", "cifar10", "imagenet"])
def test_computed_costs_equal_a_count_on_the_real_modules(preset):
    space = load_space(preset)
    rng = random.Random(0)
    archs = [RELEASED["PONASA"]] if preset == "imagenet" else []
    archs += [
        [rng.choice(space.allowed_candidates(i)) for i in range(space.num_layers)] for _ in range(2)
    ]
    for choices in archs:
        cost = network_cost(space, choices)
        assert (cost.macs, cost.params) == measured(Network(space, choices), space)


def test_cost_tables_have_table_layout_with_nulls_where_skip_is_not_allowed():
    space = load_space("digits")
    cost, base = cost_tables(space)
    assert set(cost) == {"macs", "params"} and set(base) == {"macs", "params"}
    skip = space.candidates.index("skip")
    assert [row[skip] is None for row in cost["macs"]] == [
        not space.layers[i].allows_skip for i in range(space.num_layers)
    ]
    choices = ["e6_k7", "skip", "e3_k5", "e3_k3", "e6_k3", "e6_k5"]
    total = base["macs"] + sum(
        cost["macs"][i][space.candidates.index(c)] for i, c in enumerate(choices)
    )
    assert total == network_cost(space, choices).macs


def test_latency_lookup_table_predicts_a_whole_network():
    space = load_space("digits")
    lut = profile_latency(space, "cpu", batch=8, warmup=2, repeats=5)
    assert lut["format"] == "ponas-latency/1" and len(lut["layers"]) == space.num_layers
    assert all(
        (v is None) == (not space.allowed(i, c))
        for i, row in enumerate(lut["layers"])
        for c, v in zip(space.candidates, row, strict=False)
    )
    rows = latency_error(lut, space, samples=2, warmup=2, repeats=5)
    assert all(r["predicted_ms"] > 0 and r["measured_ms"] > 0 for r in rows)
    cost, base = cost_tables(space, lut)
    scale = lut["scale"]
    assert cost["latency_ms"] == [
        [None if v is None else scale * v for v in r] for r in lut["layers"]
    ]
    assert base["latency_ms"] == pytest.approx(
        max(0.0, scale * lut["base_ms"] + lut["overhead_ms"])
    )


def test_profile_command_writes_a_lut_and_reports_error(tmp_path, capsys):
    out = tmp_path / "lut.json"
    assert (
        main(
            [
                "profile",
                "--space",
                "digits",
                "--batch",
                "4",
                "--repeats",
                "3",
                "--warmup",
                "1",
                "--check",
                "2",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    lut = json.loads(out.read_text())
    assert lut["space"] == "digits" and lut["batch"] == 4
    assert lut["method"].startswith("in context") and len(lut["check"]) == 2
    out = capsys.readouterr().out
    assert "over 2 random networks, each timed whole (" in out
    assert "batch 4, median of 3 after 1 warm-up, wall clock): mean absolute error" in out
    assert "bias (mean signed error)" in out and "whole-forward overhead fitted on" in out
    assert "rank correlation (Spearman)" in out


def test_describe_json_gives_published_figures(capsys):
    assert main(["describe", "--model", "PONASB", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert isinstance(info["macs"], int) and isinstance(info["params"], int)
    assert abs(info["macs"] - 349e6) / 349e6 < 0.015
    assert info["choices"] == RELEASED["PONASB"]


def test_describe_rejects_unknown_models_in_one_line(capsys):
    assert main(["describe", "--model", "PONASZ"]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err
        == "ponas: error: unknown model 'PONASZ': expected PONASA, PONASB, PONASC, an architecture .json or a checkpoint bundle .pt"
    )
