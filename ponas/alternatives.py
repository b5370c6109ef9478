"""Beyond the one best network: the Pareto frontier against one cost of the networks within
budgets, and the K best networks within them, both exact (each a sequence of solves).
Torch-free, like the solver they build on."""

from __future__ import annotations

import heapq
import json
import math
from typing import Any

from ponas.selection import Infeasible, Selection
from ponas.solve import pareto_frontier, solve
from ponas.table import AccuracyTable, TableError


def constrained_frontier(
    table: AccuracyTable, kind: str, budgets: dict[str, float]
) -> list[Selection]:
    """The Pareto frontier against ``kind`` of the networks within ``budgets`` (every kind),
    cheapest first: from the best network within them down, each next point the best network
    strictly cheaper in ``kind`` (one exact solve per point)."""
    others = {k: v for k, v in budgets.items() if k != kind}
    if not others:  # the frontier itself, cut at the budget on its own kind
        cap = budgets.get(kind, math.inf)
        return [p for p in pareto_frontier(table, kind) if p.cost[kind] <= cap]
    points: list[Any] = []
    limit = budgets.get(kind, math.inf)
    while True:
        try:
            point = solve(table, {**others, kind: limit})
        except Infeasible:
            break
        if points and point.score >= points[-1].score:
            points.pop()  # as good and cheaper: the earlier one is dominated
        points.append(point)
        cost = point.cost[kind]
        limit = cost - 1 if float(cost).is_integer() else math.nextafter(cost, -math.inf)
        if limit <= 0:
            break
    return points[::-1]


def top_networks(table: AccuracyTable, budgets: dict[str, float], k: int) -> list[Selection]:
    """The ``k`` best networks within ``budgets``, best first, exactly (Lawler's partition:
    each next one is the best of the subproblems that fix a prefix of an earlier answer and
    forbid its next choice)."""
    base = table.to_dict()

    def best(fixed: list[str], banned: frozenset[tuple[int, str]]) -> Selection | None:
        d = json.loads(json.dumps(base))
        for layer, row in enumerate(d["accuracy"]):
            for j, cand in enumerate(d["candidates"]):
                off = (layer, cand) in banned or layer < len(fixed) and cand != fixed[layer]
                if off and row[j] is not None:
                    row[j] = None
                    for matrix in d["cost"].values():
                        matrix[layer][j] = None
                    if d.get("stderr"):
                        d["stderr"][layer][j] = None
            allowed = [c for c, a in zip(d["candidates"], row, strict=True) if a is not None]
            if not allowed:
                return None
            if d["path"][layer] not in allowed:
                d["path"][layer] = allowed[0]
        try:
            return solve(AccuracyTable.from_dict(d), budgets)
        except (Infeasible, TableError):
            return None

    first = best([], frozenset())
    if first is None:
        solve(table, budgets)  # raises Infeasible: the budget's own message
    heap = [(-first.score, 0, first, [], frozenset())]
    found, counter = [], 1
    while heap and len(found) < k:
        _, _, sel, fixed, banned = heapq.heappop(heap)
        found.append(sel)
        for layer in range(len(fixed), len(sel.choices)):
            prefix = list(sel.choices[:layer])
            ban = frozenset({b for b in banned if b[0] >= layer} | {(layer, sel.choices[layer])})
            nxt = best(prefix, ban)
            if nxt is not None:
                heapq.heappush(heap, (-nxt.score, counter, nxt, prefix, ban))
                counter += 1
    return found
