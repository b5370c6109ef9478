"""The whole default digits search, as a user runs it: `ponas search --preset digits`."""

import math

import pytest

from ponas.cli import main
from ponas.deploy import specialize
from ponas.table import AccuracyTable


@pytest.mark.slow
def test_default_digits_search_finds_an_accurate_network(tmp_path, capsys):
    out = tmp_path / "digits"
    assert main(["search", "--preset", "digits", "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    table = AccuracyTable.load(out / "table.json")
    for row in table.accuracy:
        values = [a for a in row if a is not None]
        assert all(math.isfinite(a) for a in values)
        assert len(set(values)) > 1, "candidates of a layer should really differ"
    # the chosen path, standalone, inherited weights and recalibrated BN, no fine-tuning
    _, metrics = specialize(out / "supernet.pt", table.path)
    assert metrics["top1"] >= 0.95, metrics
