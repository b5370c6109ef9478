"""Exact-integer Pareto frontiers, the solver's building blocks (numpy only, no torch).

A cost kind's entries become exact integers (:class:`ExactCost`: MACs and params as they are,
float costs such as latency scaled by a power of two); :func:`build_frontier` merges a table's
layers from the output side into suffix (cost, value) frontiers with dominance pruning
(:func:`non_dominated`); a :class:`Bound` is what such a frontier promises the remaining
layers can add within a budget. :mod:`ponas.solve` searches with them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

Rows = list[np.ndarray]  # one array per layer, one entry per allowed candidate


def exact_rows(rows: list[list[int]]) -> Rows:
    """Exact integers as int64 when every sum fits, else as Python ints (object arrays)."""
    fits = sum(max(abs(v) for v in row) for row in rows) < 2**62
    return [np.array(row, dtype=np.int64 if fits else object) for row in rows]


class ExactCost:
    """One cost kind as exact integers: entry and base costs in units of ``1 / scale``."""

    def __init__(
        self, name: str, matrix: list[list[float | None]], base: float, cols: list[list[int]]
    ) -> None:
        values = [float(v) for row in matrix for v in row if v is not None] + [float(base)]
        self.name = name
        self.integral = all(v.is_integer() for v in values)
        # the largest power-of-two denominator makes every float an exact integer
        self.scale = 1 if self.integral else max(v.as_integer_ratio()[1] for v in values)
        self.rows = [[self._exact(matrix[i][j]) for j in cl] for i, cl in enumerate(cols)]
        self.arrays = exact_rows(self.rows)
        self.base = self._exact(base)

    def _exact(self, v: float) -> int:
        if self.integral:
            return int(v)
        n, d = float(v).as_integer_ratio()
        return n * (self.scale // d)

    def report(self, total: int) -> int | float:
        """The cost a user sees for an exact integer total (base included)."""
        if self.integral:
            return total
        return total / self.scale  # int / int is correctly rounded, like math.fsum

    def limit(self, budget: float) -> int | None:
        """The largest exact total whose reported cost is ``<= budget`` (None: no limit)."""
        if budget == math.inf:
            return None
        if self.integral:
            return math.floor(budget)
        # totals in (budget, next float up) still report as budget up to the midpoint
        up = math.nextafter(budget, math.inf)
        mid = (Fraction(budget) + Fraction(up)) / 2 * self.scale
        if mid.denominator == 1:
            n = int(mid)
            return n if self.report(n) <= budget else n - 1
        return math.floor(mid)


@dataclass
class Frontier:
    """Suffix Pareto frontiers of one objective and cost: level ``l`` covers layers l..L-1.

    ``cost[l]`` ascends strictly and so does ``score[l]``; point ``p`` of level ``l`` takes
    option ``cand[l][p]`` at layer ``l`` and continues with point ``child[l][p]`` of level
    ``l + 1``. Level ``L`` is the empty suffix, one point (0, 0).
    """

    cost: list[np.ndarray]
    score: list[np.ndarray]
    cand: list[list[int]]
    child: list[list[int]]

    def best_within(self, level: int, limit: int) -> int:
        """Index of the best point of ``level`` with cost <= limit, or -1."""
        return int(np.searchsorted(self.cost[level], limit, side="right")) - 1

    def options(self, level: int, p: int) -> list[int]:
        out = []
        for layer in range(level, len(self.cand)):
            out.append(self.cand[layer][p])
            p = self.child[layer][p]
        return out


def build_frontier(
    values: Rows,
    costs: Rows,
    ties: list[Rows] | None = None,
    cap: list[int] | None = None,
) -> Frontier:
    """Merge layers from the output side, keeping the (cost, value) non-dominated points.

    ``ties`` (cost arrays per tie-break kind) decide between points of equal cost and value:
    the lexicographically cheapest is kept. ``cap[l]`` drops level-``l`` points costlier
    than that (when no partial network could use them).
    """
    num = len(values)
    ties = ties or []
    cost = np.zeros(1, dtype=costs[0].dtype)
    score = np.zeros(1, dtype=values[0].dtype)
    tie = [np.zeros(1, dtype=t[0].dtype) for t in ties]
    levels_cost, levels_score = [cost], [score]
    cands: list[list[int]] = []
    childs: list[list[int]] = []
    for layer in reversed(range(num)):
        n = len(cost)
        all_cost = (costs[layer][:, None] + cost[None, :]).ravel()
        all_score = (values[layer][:, None] + score[None, :]).ravel()
        all_tie = [
            (t[layer][:, None] + tv[None, :]).ravel() for t, tv in zip(ties, tie, strict=True)
        ]
        idx = non_dominated(all_cost, all_score, all_tie)
        if cap is not None:
            idx = idx[all_cost[idx] <= cap[layer]]
        cost, score = all_cost[idx], all_score[idx]
        tie = [t[idx] for t in all_tie]
        cand, child = np.divmod(idx, max(n, 1))
        levels_cost.append(cost)
        levels_score.append(score)
        cands.append(cand.tolist())
        childs.append(child.tolist())
    return Frontier(levels_cost[::-1], levels_score[::-1], cands[::-1], childs[::-1])


def non_dominated(cost: np.ndarray, score: np.ndarray, ties: list[np.ndarray]) -> np.ndarray:
    """Indices of the points no other point beats (cost <=, score >=), by ascending cost.

    Of points with equal cost and score the one kept is the lexicographically smallest in
    ``ties``, then the first. The input is a few runs already sorted by cost, which a stable
    sort (timsort) merges in near-linear time: far faster than a lexsort on two keys.
    """
    if len(cost) == 0:
        return np.zeros(0, dtype=np.intp)
    order = np.argsort(cost, kind="stable")
    c, s = cost[order], score[order]
    new_group = np.ones(len(c), dtype=bool)
    new_group[1:] = c[1:] != c[:-1]
    starts = np.flatnonzero(new_group)
    group_best = np.maximum.reduceat(s, starts)
    good = np.ones(len(starts), dtype=bool)  # better than every cheaper group
    good[1:] = group_best[1:] > np.maximum.accumulate(group_best)[:-1]
    group = np.cumsum(new_group) - 1
    at = np.flatnonzero((s == group_best[group]) & good[group])
    at_group = group[at]
    first = np.flatnonzero(np.r_[True, at_group[1:] != at_group[:-1]])
    counts = np.diff(np.r_[first, len(at)])
    out = order[at[first]]
    if ties:
        for g in np.flatnonzero(counts > 1):
            members = order[at[first[g] : first[g] + counts[g]]]
            keys = [members] + [t[members] for t in reversed(ties)]  # last key sorts first
            out[g] = members[np.lexsort(keys)[0]]
    return out


@dataclass
class Bound:
    """An upper bound on what the remaining layers can add: the best value of a suffix
    frontier whose cost (``sum_k weights[k] * cost_k``) fits ``sum_k weights[k] * remaining_k``.
    One budget kind with weight 1, or a surrogate of several."""

    frontier: Frontier
    weights: dict[str, int]
    limit: int
