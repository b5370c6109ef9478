"""Choosing the network for a budget from an accuracy table, exactly (numpy only, no torch).

With ``loss_l(c) = max A[l] - A[l][c]`` the specialized network maximizes the table score
``sum_l A[l][c_l]`` subject to ``base + sum_l cost_k[l][c_l] <= budget_k`` for every budget
given (``macs``, ``params``, ``latency_ms``): a multiple-choice knapsack, solved exactly here.

* One cost kind: the whole (cost, score) Pareto frontier is built once per table and kind by
  merging layers from the output side with dominance pruning (a few hundred points for the
  19 x 12 ImageNet space); a budget is then a binary search in it. :func:`pareto_frontier`
  returns it.
* Several cost kinds at once: a forward pass over the layers keeps, as numpy arrays, every
  partial network that fits the budgets and whose score plus an upper bound for the
  remaining layers still reaches the best network known (found first by a beam search).
  The bounds are suffix frontiers: each budget kind's (the frontiers above, kept for every
  layer) and, when those leave too many partial networks, a surrogate one whose cost weighs
  the kinds by the prices of the LP relaxation (scipy's HiGHS ``linprog``). Tables whose
  accuracy grows with cost are the hard case. 2-3 budgets on 19 x 12 take a few
  milliseconds (``bench/deploy_speed.py``): several times less than HiGHS ``milp`` on the
  same problems, which is moreover only as exact as its floating-point tolerances.

Exactness. Scores are compared as integers, ``round(A * 2**43)`` (differences below ~1e-13
count as ties); costs are exact integers: MACs and params as they are, non-integral costs
(latency) scaled by the power of two that makes every entry an integer. A network fits a
budget when its reported cost (the correctly rounded float of the exact sum, which is what
``math.fsum`` gives) is ``<= budget``. Ties in score go to the cheaper network, comparing
MACs, then params, then latency.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from threading import Lock
from typing import Any

import numpy as np

from ponas.frontier import Bound, ExactCost, Frontier, Rows, build_frontier, exact_rows
from ponas.selection import Infeasible, Selection, budgets_text, distinct_cost
from ponas.table import COST_KINDS, AccuracyTable
from ponas.units import WHAT, budget_name, format_budget

__all__ = ["SCORE_SCALE", "Infeasible", "Selection", "pareto_frontier", "solve"]

_BEAM = 256  # partial networks kept by the beam that looks for a good first network
_CHUNK = 50_000  # partial networks expanded at once by the exact pass (bounds memory)
_QUICK = 500  # partial networks a first exact pass may keep before a tighter bound is built
SCORE_SCALE = 2**43  # scores as integers: exact sums far inside int64, ties below ~1e-13


class _TooMany(Exception):
    """A pass kept more partial networks than it was allowed to."""


class _Problem:
    """A table compiled to exact integers, with its frontiers cached per (objective, kind)."""

    def __init__(self, table: AccuracyTable) -> None:
        self.candidates = list(table.candidates)
        self.accuracy = [list(row) for row in table.accuracy]
        self.cols = [[j for j, a in enumerate(row) if a is not None] for row in self.accuracy]
        self.num_layers = len(self.cols)
        self.scores = [
            [round(self.accuracy[i][j] * SCORE_SCALE) for j in cl] for i, cl in enumerate(self.cols)
        ]
        self.kinds = {
            k: ExactCost(k, table.cost[k], table.base_cost[k], self.cols) for k in table.cost_kinds
        }
        self.lex = list(self.kinds)  # tie-break order: macs, params, latency_ms
        self._values: dict[str, tuple[list[list[int]], Rows]] = {}
        self._frontiers: dict[tuple[str, str], Frontier] = {}
        self._lock = Lock()

    # ---- building blocks ----------------------------------------------------------------------
    def objective(self, obj: str) -> tuple[list[list[int]], Rows]:
        """Per-option integers to maximize: ``"score"``, or ``"min:<kind>"`` for ``-cost``."""
        if obj not in self._values:
            if obj == "score":
                rows = self.scores
            else:
                rows = [[-c for c in row] for row in self.kinds[obj.removeprefix("min:")].rows]
            self._values[obj] = (rows, exact_rows(rows))
        return self._values[obj]

    def frontier(self, obj: str, kind: str) -> Frontier:
        """The suffix frontiers of ``obj`` against ``kind`` (built once, then cached)."""
        key = (obj, kind)
        with self._lock:
            if key not in self._frontiers:
                ties = [self.kinds[k].arrays for k in self.lex] if obj == "score" else None
                self._frontiers[key] = build_frontier(
                    self.objective(obj)[1], self.kinds[kind].arrays, ties
                )
            return self._frontiers[key]

    def selection(self, options: list[int]) -> Selection:
        cols = [self.cols[i][o] for i, o in enumerate(options)]
        chosen = [self.accuracy[i][j] for i, j in enumerate(cols)]
        loss = math.fsum(
            max(a for a in row if a is not None) - chosen[i] for i, row in enumerate(self.accuracy)
        )
        cost = {}
        for name, kind in self.kinds.items():
            total = kind.base + sum(kind.rows[i][o] for i, o in enumerate(options))
            cost[name] = kind.report(total)
        return Selection(
            choices=[self.candidates[j] for j in cols],
            indices=cols,
            score=math.fsum(chosen),
            loss=loss,
            cost=cost,
        )

    def min_total(self, kind: str) -> int:
        k = self.kinds[kind]
        return k.base + sum(min(row) for row in k.rows)

    def _lp_weights(self, obj: str, kinds: list[str], limits: list[int]) -> dict[str, int] | None:
        """Surrogate weights from the LP relaxation's budget prices (None if it has none)."""
        from scipy.optimize import linprog  # scipy loads in ~0.2 s; only multi-budget needs it

        sizes = [len(cl) for cl in self.cols]
        n = sum(sizes)
        # in floats, in the table's own units (exact integers of float kinds can be huge)
        unit = self.kinds[obj.removeprefix("min:")].scale if obj != "score" else SCORE_SCALE
        c = -np.array([v / unit for row in self.objective(obj)[0] for v in row], dtype=float)
        c /= max(1e-300, float(np.abs(c).max()))
        a_eq = np.zeros((self.num_layers, n))
        start = 0
        for i, size in enumerate(sizes):
            a_eq[i, start : start + size] = 1.0
            start += size
        a_ub = np.array(
            [[v / self.kinds[k].scale for row in self.kinds[k].rows for v in row] for k in kinds],
            dtype=float,
        )
        norm = np.maximum(np.abs(a_ub).max(axis=1), 1e-300)
        b_ub = (
            np.array([lim / self.kinds[k].scale for k, lim in zip(kinds, limits, strict=True)])
            / norm
        )
        try:
            res = linprog(
                c,
                A_ub=a_ub / norm[:, None],
                b_ub=b_ub,
                A_eq=a_eq,
                b_eq=np.ones(self.num_layers),
                bounds=(0, 1),
                method="highs",
            )
        except ValueError:  # the weights only speed the search up: go on without them
            return None
        if res.status != 0:
            return None
        # the price of one exact-integer unit of each kind (scales are powers of two)
        prices = np.maximum(-np.asarray(res.ineqlin.marginals, dtype=float), 0.0) / norm
        prices = np.array(
            [
                math.ldexp(p, 1 - self.kinds[k].scale.bit_length())
                for k, p in zip(kinds, prices, strict=True)
            ]
        )
        top = prices.max()
        if not top > 0:
            return None
        # integer weights (any non-negative ones give a valid bound); int64 sums if possible
        totals = [max(1, sum(max(row) for row in self.kinds[k].rows)) for k in kinds]
        for bits in range(40, 19, -1):
            weights = {k: int(p / top * 2**bits) for k, p in zip(kinds, prices, strict=True)}
            if sum(w * t for w, t in zip(weights.values(), totals, strict=True)) < 2**61:
                break
        return {k: w for k, w in weights.items() if w > 0}

    def _feasible_value(
        self, values: list[list[int]], options: list[int], kinds: list[str], limits: list[int]
    ) -> int | None:
        for k, lim in zip(kinds, limits, strict=True):
            rows = self.kinds[k].rows
            if sum(rows[i][o] for i, o in enumerate(options)) > lim:
                return None
        return sum(values[i][o] for i, o in enumerate(options))

    def search(
        self, obj: str, kinds: list[str], limits: list[int], tie: bool
    ) -> tuple[int, list[int]] | None:
        """Exact: max ``obj`` with every ``kinds`` total (base excluded) ``<= limits``; with
        ``tie``, equal values go to the lexicographically cheapest cost vector (all kinds).
        Returns ``(value, options)``, or None when nothing fits.

        A forward pass over layers keeps every partial network that could still reach the
        best value found so far: it must fit each budget and its value plus the bound of the
        remaining layers (each budget kind's suffix frontier, then if needed a surrogate
        frontier that weighs the budgets by the LP relaxation's prices) must reach it.
        """
        num = self.num_layers
        value_rows, values = self.objective(obj)
        # a limit above the costliest network binds nothing; clamping keeps int64 sums exact
        limits = [
            min(lim, sum(max(row) for row in self.kinds[k].rows))
            for k, lim in zip(kinds, limits, strict=True)
        ]
        bounds = [
            Bound(self.frontier(obj, k), {k: 1}, lim) for k, lim in zip(kinds, limits, strict=True)
        ]
        max_suffix = [0] * (num + 1)
        for i in reversed(range(num)):
            max_suffix[i] = max_suffix[i + 1] + max(value_rows[i])
        carried = list(dict.fromkeys(kinds + (self.lex if tie else [])))

        # the incumbent: the best path if it fits, else the best frontier point (walking down
        # from each budget) that fits the others too
        unconstrained = [max(range(len(row)), key=row.__getitem__) for row in value_rows]
        best = self._feasible_value(value_rows, unconstrained, kinds, limits)
        for b in bounds if best is None else []:
            p = b.frontier.best_within(0, b.limit)
            for q in range(p, max(p - 16, -1), -1):
                value = self._feasible_value(value_rows, b.frontier.options(0, q), kinds, limits)
                if value is not None:  # lower points score less: the first that fits wins
                    best = value if best is None else max(best, value)
                    break

        def improve(best: int | None) -> int | None:
            # a beam of the most promising partial networks finds a near-optimal incumbent
            # (frontier points rarely fit several budgets), which keeps the exact pass small
            found = self._forward(values, bounds, max_suffix, carried, False, best, _BEAM)
            return best if found is None or (best is not None and best >= found[0]) else found[0]

        if len(kinds) < 2:
            if best is None:
                best = improve(best)
            return self._forward(values, bounds, max_suffix, carried, tie, best, None)
        # several budgets: first try with each budget's own bound, which usually suffices ...
        best = improve(best)
        try:
            return self._forward(values, bounds, max_suffix, carried, tie, best, None, _QUICK)
        except _TooMany:
            pass
        # ... else add a surrogate budget, sum_k w_k cost_k <= sum_k w_k limit_k with the LP
        # relaxation's prices as weights, which bounds far tighter than each budget alone
        weights = self._lp_weights(obj, kinds, limits)
        if weights:
            combined_rows = [
                [sum(w * self.kinds[k].rows[i][o] for k, w in weights.items()) for o in range(m)]
                for i, m in enumerate(len(cl) for cl in self.cols)
            ]
            limit = sum(w * limits[kinds.index(k)] for k, w in weights.items())
            # a partial network at layer l has paid at least the cheapest prefix: suffix points
            # costlier than what is left after it can never be used
            cap, paid = [], 0
            for row in combined_rows:
                cap.append(limit - paid)
                paid += min(row)
            front = build_frontier(values, exact_rows(combined_rows), cap=cap)
            bounds.insert(0, Bound(front, weights, limit))
            best = improve(best)
        return self._forward(values, bounds, max_suffix, carried, tie, best, None)

    def _forward(
        self,
        values: Rows,
        bounds: list[Bound],
        max_suffix: list[int],
        carried: list[str],
        tie: bool,
        best: int | None,
        beam: int | None,
        give_up: int | None = None,
    ) -> tuple[int, list[int]] | None:
        """A pass over the layers that keeps the partial networks which fit every bound and
        can still reach ``best``: all of them (exact), or only the ``beam`` most promising.

        Partial networks are arrays (value, carried costs, choices so far). When they grow
        past ``_CHUNK`` the most promising chunk goes on first, so memory stays bounded and a
        better network found there prunes the rest. Past ``give_up`` it raises
        :class:`_TooMany`.
        """
        num = self.num_layers
        lex = self.lex if tie else []
        found: dict[str, Any] = {"value": best, "key": None, "options": None}

        def finish(score: np.ndarray, costs: dict[str, np.ndarray], paths: np.ndarray) -> None:
            top = score.max()
            winners = np.flatnonzero(score == top)
            if len(winners) > 1 and lex:
                winners = winners[np.lexsort([costs[k][winners] for k in reversed(lex)])]
            w = int(winners[0])
            key = (int(top), tuple(-int(costs[k][w]) for k in lex))  # larger is better
            if found["key"] is None or key > found["key"]:
                found.update(value=int(top), key=key, options=paths[w].tolist())

        def run(
            layer: int, score: np.ndarray, costs: dict[str, np.ndarray], paths: np.ndarray
        ) -> None:
            while layer < num:
                m = len(values[layer])
                all_score = (score[:, None] + values[layer][None, :]).ravel()
                all_costs = {
                    k: (c[:, None] + self.kinds[k].arrays[layer][None, :]).ravel()
                    for k, c in costs.items()
                }
                ok = np.ones(len(all_score), dtype=bool)
                ub = np.full(len(all_score), max_suffix[layer + 1], dtype=all_score.dtype)
                for b in bounds:
                    exact = b.frontier.cost[0].dtype  # object when weighted sums pass int64
                    spent = sum(
                        w * (c if (c := all_costs[k]).dtype == exact else c.astype(exact))
                        for k, w in b.weights.items()
                    )
                    if len(b.frontier.cost[layer + 1]) == 0:
                        return  # no suffix fits this bound at all
                    p = np.searchsorted(b.frontier.cost[layer + 1], b.limit - spent, side="right")
                    ok &= p > 0
                    ub = np.minimum(ub, b.frontier.score[layer + 1][np.maximum(p - 1, 0)])
                if found["value"] is not None:
                    ok &= all_score + ub >= found["value"]
                idx = np.flatnonzero(ok)
                if beam is not None and len(idx) > beam:
                    reach = (all_score + ub)[idx]
                    idx = np.sort(idx[np.argpartition(-reach, beam)[:beam]])
                if len(idx) == 0:
                    return
                if give_up is not None and len(idx) > give_up:
                    raise _TooMany
                score = all_score[idx]
                costs = {k: c[idx] for k, c in all_costs.items()}
                paths = np.column_stack([paths[idx // m], (idx % m).astype(np.int16)])
                layer += 1
                if len(idx) > _CHUNK and layer < num:
                    order = np.argsort(-(all_score + ub)[idx], kind="stable")
                    for start in range(0, len(order), _CHUNK):
                        part = order[start : start + _CHUNK]
                        run(layer, score[part], {k: c[part] for k, c in costs.items()}, paths[part])
                    return
            finish(score, costs, paths)

        run(
            0,
            np.zeros(1, dtype=values[0].dtype),
            {k: np.zeros(1, dtype=self.kinds[k].arrays[0].dtype) for k in carried},
            np.zeros((1, 0), dtype=np.int16),
        )
        if found["options"] is None:
            return None
        return found["value"], found["options"]


_CACHE: OrderedDict[tuple, _Problem] = OrderedDict()
_CACHE_SIZE = 32
_CACHE_LOCK = Lock()


def _problem(table: AccuracyTable) -> _Problem:
    """The compiled table, cached by content (a changed table is a new entry)."""
    key = (
        tuple(table.candidates),
        tuple(map(tuple, table.accuracy)),
        tuple((k, tuple(map(tuple, table.cost[k])), table.base_cost[k]) for k in table.cost_kinds),
    )
    with _CACHE_LOCK:
        prob = _CACHE.get(key)
        if prob is not None:
            _CACHE.move_to_end(key)
            return prob
    prob = _Problem(table)
    with _CACHE_LOCK:
        _CACHE[key] = prob
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return prob


def _check_kind(table: AccuracyTable, kind: str) -> None:
    if kind not in table.cost_kinds:
        hint = " (measure one with `ponas profile`)" if kind == "latency_ms" else ""
        raise ValueError(
            f"unknown cost kind {kind!r}: this table has {', '.join(table.cost_kinds)}{hint}"
        )


def _infeasible(
    prob: _Problem, kinds: list[str], budgets: dict[str, float], limits: dict[str, int]
) -> Infeasible:
    """Explain why no network fits: the first budget (in the order MACs, params, latency)
    that cannot be met together with the ones before it, and the smallest cost reachable."""
    for kind in kinds:
        smallest_exact = prob.min_total(kind)
        if smallest_exact > limits[kind]:
            smallest = prob.kinds[kind].report(smallest_exact)
            budget = budgets[kind]
            return Infeasible(
                f"{budget_name(kind)}={format_budget(budget)} is below the smallest network "
                f"in this space ({distinct_cost(kind, smallest, budget)})",
                kind,
                budget,
                smallest,
            )
    for p in range(2, len(kinds) + 1):
        others, kind = kinds[: p - 1], kinds[p - 1]
        k = prob.kinds[kind]
        found = prob.search(
            f"min:{kind}", others, [limits[o] - prob.kinds[o].base for o in others], tie=False
        )
        assert found is not None, "the budgets before this one were checked to be feasible"
        smallest_exact = k.base - found[0]
        if smallest_exact <= limits[kind]:
            continue
        smallest = k.report(smallest_exact)
        budget = budgets[kind]
        shown = distinct_cost(kind, smallest, budget)
        return Infeasible(
            f"no network meets {budgets_text(kinds[:p], budgets)} together: the smallest "
            f"{WHAT[kind]} reachable within {budgets_text(others, budgets)} is {shown}",
            kind,
            budget,
            smallest,
        )
    raise AssertionError("infeasible budgets but every prefix is feasible")


def solve(table: AccuracyTable, budgets: dict[str, float]) -> Selection:
    """The most accurate network (max table score) within every budget, exactly.

    ``budgets`` maps cost kinds (``macs``, ``params``, ``latency_ms``) to the largest allowed
    whole-network cost; a network fits when ``base + sum of its blocks' costs <= budget``.
    No budgets gives the best path. Ties in score go to the cheaper network (MACs, then
    params, then latency). Raises :class:`Infeasible` when nothing fits and
    :class:`ValueError` for a cost kind the table does not have.
    """
    for kind, value in budgets.items():
        _check_kind(table, kind)
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            raise ValueError(f"{budget_name(kind)} must be a number, got {value!r}")
    prob = _problem(table)
    kinds = [k for k in COST_KINDS if k in budgets and budgets[k] != math.inf]
    limits = {k: prob.kinds[k].limit(float(budgets[k])) for k in kinds}
    for kind in kinds:
        if prob.min_total(kind) > limits[kind]:
            raise _infeasible(prob, kinds, budgets, limits)
    if kinds == [prob.lex[0]]:
        # one budget on the first tie-break kind: the frontier answers it, ties included
        kind = kinds[0]
        front = prob.frontier("score", kind)
        p = front.best_within(0, limits[kind] - prob.kinds[kind].base)
        return _with_stderr(table, prob.selection(front.options(0, p)))
    found = prob.search("score", kinds, [limits[k] - prob.kinds[k].base for k in kinds], tie=True)
    if found is None:
        raise _infeasible(prob, kinds, budgets, limits)
    return _with_stderr(table, prob.selection(found[1]))


def _with_stderr(table: AccuracyTable, selection: Selection) -> Selection:
    # The compiled problem is cached by accuracies and costs only, so the table's standard
    # errors are read here, from the table asked about.
    selection.score_stderr = table.score_stderr(selection.choices)
    return selection


def pareto_frontier(table: AccuracyTable, cost: str = "macs") -> list[Selection]:
    """Every non-dominated (cost, score) network, cheapest first (scores ascend with cost).

    Among networks with the same cost and score, the one kept is the cheapest in MACs, then
    params, then latency.
    """
    _check_kind(table, cost)
    prob = _problem(table)
    front = prob.frontier("score", cost)
    points: list[Selection] = []
    for p in range(len(front.cost[0])):
        point = _with_stderr(table, prob.selection(front.options(0, p)))
        # Exactly different costs can print as the same float (e.g. 1.0 + 1e-300 ms); then the
        # cheaper one is dominated as a user sees it, so keep the better-scoring one.
        if points and points[-1].cost[cost] == point.cost[cost]:
            points.pop()
        points.append(point)
    return points
