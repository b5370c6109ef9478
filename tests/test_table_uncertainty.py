"""How certain a table's numbers are: the predicted score's standard error and the layers
whose two best blocks the table cannot tell apart (issue 18, "show it to users")."""

from __future__ import annotations

import json
import math

import pytest

from ponas.cli import main
from ponas.solve import pareto_frontier, solve
from ponas.table import AccuracyTable, CloseCall, TableError
from tests.test_deploy_solver import NAMES, three_layer_table


def with_stderr(stderr: list[list[float | None]]) -> AccuracyTable:
    """The three-layer table of the solver tests, with these standard errors."""
    d = three_layer_table().to_dict()
    d["stderr"] = stderr
    return AccuracyTable.from_dict(d)


# accuracy: [[0.5, 0.7, 0.9], [0.5, 0.6, 0.8], [0.4, 0.6, None]], columns a, b, c
A, B, C = NAMES[:3]
ERRORS = [[0.01, 0.02, 0.03], [0.02, 0.15, 0.15], [0.04, 0.01, None]]


def test_the_predicted_score_carries_the_standard_error_of_its_entries():
    table = with_stderr(ERRORS)
    best = solve(table, {})
    assert best.choices == [C, C, B]
    assert best.score_stderr == pytest.approx(math.sqrt(0.03**2 + 0.15**2 + 0.01**2))
    assert best.to_dict()["score_stderr"] == best.score_stderr
    assert table.score_stderr([A, A, A]) == pytest.approx(math.sqrt(0.01**2 + 0.02**2 + 0.04**2))


def test_a_score_whose_entries_have_no_error_has_none():
    assert solve(three_layer_table(), {}).score_stderr is None  # no stderr in the table
    table = with_stderr([[0.01, 0.02, None], [0.02, 0.15, 0.15], [0.04, 0.01, None]])
    assert solve(table, {}).score_stderr is None  # layer 1's chosen block has none
    assert table.score_stderr([A, A, A]) is not None


def test_a_score_error_is_read_from_the_table_asked_about_not_a_cached_twin():
    # the solver caches a table by its accuracies and costs: the errors must not leak
    first = solve(with_stderr(ERRORS), {"macs": 60e6})
    doubled = [[None if e is None else 2 * e for e in row] for row in ERRORS]
    second = solve(with_stderr(doubled), {"macs": 60e6})
    assert second.choices == first.choices
    assert second.score_stderr == pytest.approx(2 * first.score_stderr)
    assert solve(three_layer_table(), {"macs": 60e6}).score_stderr is None


def test_every_pareto_point_has_its_score_error():
    table = with_stderr(ERRORS)
    for point in pareto_frontier(table, "macs"):
        assert point.score_stderr == pytest.approx(table.score_stderr(point.choices))


def test_the_score_error_of_a_network_that_does_not_fit_the_table_says_why():
    table = with_stderr(ERRORS)
    with pytest.raises(TableError, match="has 3 layers, got 2 choices"):
        table.score_stderr([A, A])
    with pytest.raises(TableError, match="'e9_k9' is not a candidate of this table"):
        table.score_stderr([A, A, "e9_k9"])


def test_a_layer_whose_two_best_blocks_are_within_noise_is_a_close_call():
    # layer 0: 0.9 vs 0.7, apart by 0.2 > hypot(0.03, 0.02): separated
    # layer 1: 0.8 vs 0.6, apart by 0.2 < hypot(0.15, 0.15) = 0.212: within noise
    # layer 2: 0.6 vs 0.4, apart by 0.2 > hypot(0.01, 0.04): separated
    calls = with_stderr(ERRORS).close_calls()
    assert calls == [
        CloseCall(
            layer=1,
            best=C,
            best_accuracy=0.8,
            best_stderr=0.15,
            second=B,
            second_accuracy=0.6,
            second_stderr=0.15,
            gap=pytest.approx(0.2),
            noise=pytest.approx(math.hypot(0.15, 0.15)),
        )
    ]


def test_a_table_without_errors_has_no_close_calls_to_report():
    assert three_layer_table().close_calls() == []
    # a layer whose two best entries lack an error cannot be judged either
    assert (
        with_stderr([[0.01, None, None], [0.02, 0.15, None], [0.04, 0.01, None]]).close_calls()
        == []
    )


def test_ponas_deploy_prints_the_predicted_score_with_its_error(tmp_path, capsys):
    path = tmp_path / "table.json"
    with_stderr(ERRORS).save(path)
    assert main(["deploy", "--table", str(path)]) == 0
    error = math.sqrt(0.03**2 + 0.15**2 + 0.01**2)
    assert (
        f"predicted score 2.3000 ± {error:.4f} (sum of table accuracies, a ranking score, not a "
        "test accuracy)\nscore given up for the budgets: 0.0000"
    ) in capsys.readouterr().out
    assert main(["deploy", "--table", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["score_stderr"] == pytest.approx(error)


def test_ponas_deploy_names_likelihood_entries_for_what_they_are(tmp_path, capsys):
    table = with_stderr(ERRORS)
    table.meta["config"] = {"score": "likelihood"}
    table.save(tmp_path / "table.json")
    assert main(["deploy", "--table", str(tmp_path / "table.json")]) == 0
    assert "(sum of table likelihoods, a ranking score" in capsys.readouterr().out
