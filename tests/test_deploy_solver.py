"""The exact budget solver: brute force agrees on small tables, and the messages a user reads."""

from __future__ import annotations

import itertools
import math
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ponas import solve as solve_module
from ponas.solve import Infeasible, Selection, pareto_frontier, solve
from ponas.table import COST_KINDS, AccuracyTable
from ponas.units import format_cost, parse_budget

NAMES = ["e3_k3", "e3_k5", "e6_k3", "e6_k5", "e6_k7_se"]


def make_table(
    accuracy: list[list[float | None]],
    macs: list[list[int | None]],
    params: list[list[int | None]] | None = None,
    latency: list[list[float | None]] | None = None,
    base: dict[str, float] | None = None,
    space: dict | None = None,
) -> AccuracyTable:
    """A hand-built table; params default to 10 per block, base costs to 0."""
    width = len(accuracy[0])
    cost = {"macs": macs}
    cost["params"] = params or [[None if a is None else 10 for a in row] for row in accuracy]
    meta = {}
    if latency is not None:
        cost["latency_ms"] = latency
        meta["latency_device"] = "test CPU"
    base = base or {}
    best = [
        NAMES[max((j for j in range(width) if row[j] is not None), key=lambda j, r=row: r[j])]
        for row in accuracy
    ]
    return AccuracyTable(
        space=space or {"name": "x"},
        candidates=NAMES[:width],
        accuracy=accuracy,
        cost=cost,
        base_cost={k: base.get(k, 0) for k in cost},
        path=best,
        meta=meta,
    )


# ---- brute force ---------------------------------------------------------------------------


def all_networks(table: AccuracyTable):
    """Every network as (columns, score, cost by kind) with the solver's definitions."""
    rows = [[j for j, a in enumerate(row) if a is not None] for row in table.accuracy]
    for cols in itertools.product(*rows):
        score = math.fsum(table.accuracy[i][j] for i, j in enumerate(cols))
        cost = {
            k: math.fsum([table.base_cost[k]] + [table.cost[k][i][j] for i, j in enumerate(cols)])
            for k in table.cost_kinds
        }
        yield cols, score, cost


def fits(cost: dict[str, float], budgets: dict[str, float]) -> bool:
    return all(cost[k] <= b for k, b in budgets.items())


def expected_infeasible(table: AccuracyTable, budgets: dict[str, float]) -> tuple[str, float]:
    """The budget the solver must blame and the smallest cost it must quote: a budget no
    network meets alone first, else the first kind (MACs, params, latency) that cannot be met
    together with the ones before it."""
    kinds = [k for k in COST_KINDS if k in budgets]
    nets = list(all_networks(table))
    for kind in kinds:
        smallest = min(cost[kind] for _, _, cost in nets)
        if smallest > budgets[kind]:
            return kind, smallest
    for p in range(2, len(kinds) + 1):
        before = {k: budgets[k] for k in kinds[: p - 1]}
        kind = kinds[p - 1]
        smallest = min(cost[kind] for _, _, cost in nets if fits(cost, before))
        if smallest > budgets[kind]:
            return kind, smallest
    raise AssertionError("feasible")


# ---- strategies ----------------------------------------------------------------------------


@st.composite
def tables(draw, dyadic: bool = True, latency: bool | None = None) -> AccuracyTable:
    layers = draw(st.integers(1, 6))
    width = draw(st.integers(1, 5))
    if dyadic:  # multiples of 1/64: every sum is exact, so ties are real ties
        acc_value = st.integers(0, 64).map(lambda n: n / 64)
    else:
        acc_value = st.floats(0, 1, allow_nan=False, allow_subnormal=False)
    accuracy = []
    for _ in range(layers):
        row = draw(st.lists(st.one_of(st.none(), acc_value), min_size=width, max_size=width))
        if all(a is None for a in row):
            row[draw(st.integers(0, width - 1))] = draw(acc_value)
        accuracy.append(row)

    def matrix(value):
        return [[None if a is None else draw(value) for a in row] for row in accuracy]

    small = st.integers(0, 40)  # small integers: many equal costs and ties
    macs = matrix(st.one_of(small, st.integers(0, 10**9)))
    params = matrix(small)
    with_latency = draw(st.booleans()) if latency is None else latency
    lat = None
    if with_latency:
        lat = matrix(
            st.one_of(
                st.integers(0, 20).map(lambda n: n / 8),
                st.floats(0, 50, allow_nan=False, allow_subnormal=False),
            )
        )
    base = {
        "macs": draw(st.integers(0, 100)),
        "params": draw(st.integers(0, 100)),
        "latency_ms": draw(st.floats(0, 5, allow_nan=False, allow_subnormal=False)),
    }
    return make_table(accuracy, macs, params, lat, base)


@st.composite
def problems(draw, dyadic: bool = True) -> tuple[AccuracyTable, dict[str, float]]:
    table = draw(tables(dyadic=dyadic))
    kinds = draw(st.lists(st.sampled_from(table.cost_kinds), min_size=1, max_size=3, unique=True))
    nets = list(all_networks(table))
    budgets = {}
    for kind in kinds:
        values = sorted({cost[kind] for _, _, cost in nets})
        how = draw(st.sampled_from(["exact", "between", "below", "above"]))
        if how == "exact":  # a budget exactly at some network's cost: the boundary case
            budgets[kind] = float(draw(st.sampled_from(values)))
        elif how == "between":
            budgets[kind] = draw(st.floats(values[0], values[-1], allow_nan=False))
        elif how == "below":
            budgets[kind] = values[0] - draw(st.floats(0.5, 100))
        else:
            budgets[kind] = values[-1] + draw(st.floats(0, 100))
    return table, budgets


# ---- properties ----------------------------------------------------------------------------


def check_against_brute_force(table: AccuracyTable, budgets: dict[str, float]) -> None:
    nets = [n for n in all_networks(table) if fits(n[2], budgets)]
    if not nets:
        kind, smallest = expected_infeasible(table, budgets)
        with pytest.raises(Infeasible) as err:
            solve(table, budgets)
        assert err.value.kind == kind
        assert err.value.smallest == smallest
        message = str(err.value)
        assert (
            format_cost(kind, smallest) in message
            or format_cost(kind, smallest, precise=True) in message
        ), message
        return
    sel = solve(table, budgets)
    best = max(score for _, score, _ in nets)
    assert abs(sel.score - best) <= 1e-9
    # the selection is what it says it is, and it fits
    assert sel.choices == [table.candidates[j] for j in sel.indices]
    assert all(table.accuracy[i][j] is not None for i, j in enumerate(sel.indices))
    assert sel.score == math.fsum(table.accuracy[i][j] for i, j in enumerate(sel.indices))
    recomputed = dict(next(n for n in all_networks(table) if list(n[0]) == sel.indices)[2])
    assert sel.cost == recomputed
    assert fits(sel.cost, budgets)
    row_best = [max(a for a in row if a is not None) for row in table.accuracy]
    assert sel.loss == pytest.approx(math.fsum(row_best) - sel.score, abs=1e-9)
    assert sel.loss >= 0


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems(dyadic=True))
def test_solver_matches_brute_force_and_breaks_ties_to_the_cheaper_network(problem):
    table, budgets = problem
    check_against_brute_force(table, budgets)
    nets = [n for n in all_networks(table) if fits(n[2], budgets)]
    if nets:
        # with exact (dyadic) scores a tie is a tie: the cheapest network wins
        best = max(score for _, score, _ in nets)
        kinds = table.cost_kinds
        cheapest = min(tuple(c[k] for k in kinds) for _, s, c in nets if s == best)
        sel = solve(table, budgets)
        assert sel.score == best
        assert tuple(sel.cost[k] for k in kinds) == cheapest


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems(dyadic=False))
def test_solver_matches_brute_force_on_arbitrary_float_accuracies(problem):
    check_against_brute_force(*problem)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems(dyadic=True))
def test_solver_stays_exact_on_the_paths_large_tables_take(problem):
    # tiny limits make the small tables take the paths that large ones take: the first pass
    # gives up, the surrogate bound is built, partial networks are split into chunks
    with (
        mock.patch.object(solve_module, "_CHUNK", 2),
        mock.patch.object(solve_module, "_BEAM", 1),
        mock.patch.object(solve_module, "_QUICK", 1),
    ):
        check_against_brute_force(*problem)


@settings(max_examples=60, deadline=None)
@given(tables(dyadic=True), st.sampled_from(["macs", "params", "latency_ms"]))
def test_pareto_frontier_is_every_non_dominated_network_cheapest_first(table, kind):
    if kind not in table.cost_kinds:
        kind = "macs"
    front = pareto_frontier(table, kind)
    costs = [s.cost[kind] for s in front]
    scores = [s.score for s in front]
    assert costs == sorted(costs) and len(set(costs)) == len(costs)
    assert scores == sorted(scores) and len(set(scores)) == len(scores)
    nets = list(all_networks(table))
    # no network beats a frontier point, and every network is matched by one
    for s in front:
        assert not any(c[kind] <= s.cost[kind] and sc > s.score for _, sc, c in nets)
    for _, sc, c in nets:
        assert any(s.cost[kind] <= c[kind] and s.score >= sc for s in front)
    # each point is the answer for its own cost as the budget
    for s in front:
        assert solve(table, {kind: s.cost[kind]}).score == s.score


# ---- budgets ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("300M", 300e6),
        ("5.1m", 5.1e6),
        ("2e6", 2e6),
        ("20", 20.0),
        ("12.5", 12.5),
        (".5", 0.5),
        ("300k", 300e3),
        ("1.5G", 1.5e9),
        (" 300M ", 300e6),
        (300, 300.0),
    ],
)
def test_budget_accepts_numbers_with_k_m_g_suffixes(text, value):
    assert parse_budget(text) == value


FORMS = "a positive number with an optional K, M or G suffix (e.g. 300M, 5.1m, 2e6, 20)"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("abc", f"invalid budget 'abc': expected {FORMS}"),
        ("", f"invalid budget '': expected {FORMS}"),
        ("300MB", f"invalid budget '300MB': expected {FORMS}"),
        ("1_000", f"invalid budget '1_000': expected {FORMS}"),
        ("-5", f"invalid budget '-5': expected {FORMS}"),
        ("inf", f"invalid budget 'inf': expected {FORMS}"),
        ("nan", f"invalid budget 'nan': expected {FORMS}"),
        ("0", "invalid budget '0': a budget must be greater than 0"),
        ("0M", "invalid budget '0M': a budget must be greater than 0"),
        ("1e400", "invalid budget '1e400': the number is too large"),
        (float("nan"), f"invalid budget nan: expected {FORMS}"),
        (-1.0, "invalid budget -1.0: a budget must be greater than 0"),
    ],
)
def test_budget_rejects_anything_else_saying_what_is_accepted(text, message):
    with pytest.raises(ValueError) as err:
        parse_budget(text)
    assert str(err.value) == message


@pytest.mark.parametrize(
    ("kind", "value", "text"),
    [
        ("macs", 41_234_567, "41.2M MACs"),
        ("macs", 950, "950 MACs"),
        ("macs", 326_000_000, "326M MACs"),
        ("macs", 999_999, "1.00M MACs"),
        ("params", 3_400_000, "3.40M params"),
        ("params", 5_600, "5.60K params"),
        ("latency_ms", 12.34, "12.3 ms"),
        ("latency_ms", 0.5, "0.500 ms"),
    ],
)
def test_costs_read_like_the_paper(kind, value, text):
    assert format_cost(kind, value) == text


# ---- answers and messages ----------------------------------------------------------------------


def three_layer_table() -> AccuracyTable:
    return make_table(
        accuracy=[[0.5, 0.7, 0.9], [0.5, 0.6, 0.8], [0.4, 0.6, None]],
        macs=[[10_000_000, 20_000_000, 40_000_000]] * 2 + [[5_000_000, 9_000_000, None]],
        params=[[900_000, 300_000, 100_000]] * 2 + [[50_000, 80_000, None]],
        base={"macs": 16_200_000, "params": 1_000_000},
    )


def test_a_budget_below_the_smallest_network_says_what_is_reachable():
    table = three_layer_table()  # smallest: 16.2M + 10M + 10M + 5M = 41.2M MACs
    with pytest.raises(Infeasible) as err:
        solve(table, {"macs": 1000})
    assert str(err.value) == (
        "max_macs=1000 is below the smallest network in this space (41.2M MACs)"
    )
    assert (err.value.kind, err.value.budget, err.value.smallest) == ("macs", 1000, 41_200_000)


def test_an_infeasible_budget_close_to_the_smallest_network_shows_every_digit():
    table = three_layer_table()
    with pytest.raises(Infeasible) as err:
        solve(table, {"macs": 41_199_999})
    assert str(err.value) == (
        "max_macs=41199999 is below the smallest network in this space (41,200,000 MACs)"
    )


def test_budgets_that_cannot_be_met_together_name_the_smallest_reachable_cost():
    table = three_layer_table()
    # either budget alone can be met, but within 60M MACs the fewest params are 2.25M
    solve(table, {"macs": 60e6})
    solve(table, {"params": 2e6})
    with pytest.raises(Infeasible) as err:
        solve(table, {"macs": 60e6, "params": 2e6})
    assert str(err.value) == (
        "no network meets max_macs=60M and max_params=2M together: the smallest "
        "parameter count reachable within max_macs=60M is 2.25M params"
    )
    assert err.value.kind == "params" and err.value.smallest == 2_250_000


def test_a_cost_kind_the_table_lacks_is_named_with_the_available_ones():
    with pytest.raises(ValueError) as err:
        solve(three_layer_table(), {"latency_ms": 10})
    assert str(err.value) == (
        "unknown cost kind 'latency_ms': this table has macs, params "
        "(measure one with `ponas profile`)"
    )
    with pytest.raises(ValueError, match="unknown cost kind 'flops': this table has macs, params"):
        pareto_frontier(three_layer_table(), "flops")


def test_without_budgets_the_best_path_wins():
    table = three_layer_table()
    sel = solve(table, {})
    assert sel.choices == table.best_path() == ["e6_k3", "e6_k3", "e3_k5"]
    assert sel.loss == 0


def test_ties_go_to_fewer_macs_then_fewer_params():
    table = make_table(
        accuracy=[[0.5, 0.5, 0.5, 0.4]],
        macs=[[30, 20, 20, 1]],
        params=[[1, 9, 8, 1]],
    )
    assert solve(table, {"macs": 100}).choices == ["e6_k3"]
    # under a params budget too, the rule is MACs first
    assert solve(table, {"params": 100}).choices == ["e6_k3"]
    assert solve(table, {"macs": 100, "params": 100}).choices == ["e6_k3"]
    assert table.best_path() == ["e6_k3"]


def test_a_budget_exactly_at_a_networks_cost_admits_it():
    table = three_layer_table()
    front = pareto_frontier(table, "macs")
    for point in front:
        assert solve(table, {"macs": point.cost["macs"]}).cost["macs"] == point.cost["macs"]


def test_latency_budgets_compare_the_reported_sum():
    # 0.1 + 0.2 = 0.30000000000000004 as floats: a 0.3 ms budget does not admit it
    table = make_table(
        accuracy=[[0.9, 0.1], [0.9, 0.1]],
        macs=[[1, 1], [1, 1]],
        latency=[[0.1, 0.0], [0.2, 0.0]],
    )
    assert solve(table, {"latency_ms": 0.30000000000000004}).choices == ["e3_k3", "e3_k3"]
    sel = solve(table, {"latency_ms": 0.3})
    assert sel.cost["latency_ms"] <= 0.3 and sel.score == pytest.approx(1.0)


def test_a_table_with_only_a_space_name_can_be_solved():
    table = three_layer_table()
    assert table.space == {"name": "x"} and not table.has_full_space
    sel = solve(table, {"macs": 60e6})
    assert isinstance(sel, Selection)
    assert sel.to_dict() == {
        "choices": sel.choices,
        "score": sel.score,
        "score_stderr": None,
        "loss": sel.loss,
        "cost": sel.cost,
    }
    assert set(sel.to_dict()) == {"choices", "score", "score_stderr", "loss", "cost"}


def test_a_changed_table_is_solved_afresh():
    table = three_layer_table()
    before = solve(table, {})
    table.accuracy[0] = [0.99, 0.7, 0.9]
    after = solve(table, {})
    assert before.choices[0] == "e6_k3" and after.choices[0] == "e3_k3"


def test_the_imagenet_space_is_solved_exactly_for_three_budgets_at_once():
    import random

    from ponas.space import load_space

    space = load_space("imagenet")
    rng = random.Random(0)
    accuracy = [[rng.uniform(0.6, 0.75) for _ in space.candidates] for _ in space.layers]
    table = AccuracyTable.build(space, accuracy, [space.candidates[0]] * space.num_layers)
    single = solve(table, {"macs": 300e6})
    assert single.cost["macs"] <= 300e6
    both = solve(table, {"macs": 300e6, "params": 4e6})
    assert both.cost["params"] <= 4e6 and both.score <= single.score
    # the answer is optimal: the frontier's best point under 300M MACs ties or beats it
    front = [s for s in pareto_frontier(table, "macs") if s.cost["macs"] <= 300e6]
    assert single.score == front[-1].score


def test_frontier_points_never_print_the_same_cost_twice():
    # 1.0 + 5e-324 ms is a different cost exactly but the same float: only the better one stays
    table = AccuracyTable(
        space={"name": "x"},
        candidates=["e3_k3", "e3_k5", "e6_k3"],
        accuracy=[[0.015625, 0.0, 0.0]],
        cost={"macs": [[1, 1, 1]], "params": [[1, 1, 1]], "latency_ms": [[5e-324, 0.0, 0.0]]},
        base_cost={"macs": 0, "params": 0, "latency_ms": 1.0},
        path=["e3_k3"],
        meta={"latency_device": "test CPU"},
    )
    front = pareto_frontier(table, "latency_ms")
    assert [(p.cost["latency_ms"], p.score, p.choices) for p in front] == [
        (1.0, 0.015625, ["e3_k3"])
    ]
