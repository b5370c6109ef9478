"""Entry noise between two stage-2 draws: the setting, the command's errors, the figures."""

import pytest

from ponas import noise
from ponas.cli import main
from ponas.search.config import ConfigError, SearchConfig


def test_stage2_seed_defaults_to_the_search_seed_and_rejects_below_minus_one():
    assert SearchConfig.from_dict({"seed": 7}).stage2_seeding == 7
    assert SearchConfig.from_dict({"seed": 7, "stage2_seed": 3}).stage2_seeding == 3
    with pytest.raises(ConfigError, match="stage2_seed must be -1"):
        SearchConfig.from_dict({"stage2_seed": -2})


def test_stage2_only_without_a_supernet_says_what_it_needs(capsys):
    assert main(["search", "--stage2-only", "--out", "x"]) == 2
    assert "--stage2-only needs --supernet PATH and --out DIR" in capsys.readouterr().err


def test_stage2_only_refuses_a_folder_without_a_stage1_checkpoint(tmp_path, capsys):
    code = main(["search", "--stage2-only", "--supernet", str(tmp_path), "--out", "o"])
    assert code == 2
    assert "no stage-1 checkpoint there" in capsys.readouterr().err


def test_summary_says_which_layers_separate_their_candidates():
    doc = {
        "format": noise.NOISE_FORMAT,
        "budget": noise.BUDGET,
        "layers": [
            {"layer": 0, "noise": 0.002, "spread": 0.02, "ratio": 0.1, "same_prefix": True},
            {"layer": 1, "noise": 0.02, "spread": 0.01, "ratio": 2.0, "same_prefix": False},
        ],
        "agreement": [{"cost": "macs", "budget": 1, "networks": 300, "tau": 0.5}],
    }
    lines = noise.summary_lines(doc)
    assert lines[0].endswith("ratio 0.10: separates its candidates")
    assert "ratio 2.00: within noise (the two draws chose other prefixes)" in lines[1]
    assert "Kendall tau 0.50 over 300" in lines[2]


def test_a_table_alone_says_which_rows_its_context_error_drowns(tiny_search):
    _, table, _ = tiny_search
    lines = noise.table_lines(table)
    rows = [i for i, e in enumerate(table.stderr) if any(x is not None for x in e)]
    assert [int(line.split(":")[0].split()[1]) for line in lines] == rows  # 0-based, as the CLI
    for line in lines:
        assert line.endswith(("separates its candidates", "within noise", "no spread"))
    # the verdict is the ratio against the budget
    spread = [v for v in table.accuracy[rows[0]] if v is not None]
    errs = sorted(e for e in table.stderr[rows[0]] if e is not None)
    ratio = errs[len(errs) // 2] / noise._sd(spread)
    assert f"ratio {ratio:.2f}" in lines[0]
    assert lines[0].endswith(
        "separates its candidates" if ratio <= noise.BUDGET else "within noise"
    )


def test_within_counts_the_layers_at_or_under_the_budget_and_not_a_flat_row():
    layers = [{"ratio": r} for r in (0.2, 0.5, 0.51, None)]
    assert noise.within({"budget": 0.5, "layers": layers}) == 2
    assert noise.within({"budget": 1.0, "layers": layers}) == 3
