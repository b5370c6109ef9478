"""Baselines the exact solver (:func:`ponas.solve.solve`) is measured against.

* :func:`greedy`: start from the best path, then repeatedly downgrade the block that loses
  the least accuracy per unit of cost saved, until every budget is met.
* :func:`evolution`: regularized evolution as in Once-for-All's ``EvolutionFinder``
  (``ofa/nas/search_algorithm/evolution.py``), with its defaults: population 100, 500
  generations, mutation probability 0.1, parent ratio 0.25, mutation ratio 0.5; every sample
  (random, mutated, crossed over) is redrawn until it meets the budgets.
* :func:`milp`: scipy's HiGHS mixed-integer solver on the same knapsack, in floating point
  with its default tolerances (not exact: for timing and cross-checking).

Each returns ``(columns, score, cost)`` with the solver's definitions (score = sum of the
chosen accuracies, cost = base + sum per kind), or None when it found nothing that fits.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import sys

import numpy as np

from ponas.table import AccuracyTable

Result = tuple[list[int], float, dict[str, float]] | None


def _allowed(table: AccuracyTable) -> list[list[int]]:
    return [[j for j, a in enumerate(row) if a is not None] for row in table.accuracy]


def evaluate(table: AccuracyTable, cols: list[int]) -> tuple[float, dict[str, float]]:
    """Score and whole-network costs of the columns ``cols`` (one per layer)."""
    score = math.fsum(table.accuracy[i][j] for i, j in enumerate(cols))
    cost = {
        k: math.fsum([table.base_cost[k]] + [table.cost[k][i][j] for i, j in enumerate(cols)])
        for k in table.cost_kinds
    }
    return score, cost


def _fits(cost: dict[str, float], budgets: dict[str, float]) -> bool:
    return all(cost[k] <= b for k, b in budgets.items())


def greedy(table: AccuracyTable, budgets: dict[str, float]) -> Result:
    """Downgrade the cheapest-to-lose block until the network fits (or nothing is left)."""
    allowed = _allowed(table)
    acc, cost = table.accuracy, table.cost
    cols = [table.candidates.index(c) for c in table.best_path()]
    while True:
        score, total = evaluate(table, cols)
        over = {k: b for k, b in budgets.items() if total[k] > b}
        if not over:
            return cols, score, total
        best = None
        for i, cur in enumerate(cols):
            for j in allowed[i]:
                # cost saved on the budgets still exceeded, each relative to its budget
                saved = sum(
                    (cost[k][i][cur] - cost[k][i][j]) / max(b, 1e-12) for k, b in over.items()
                )
                if saved <= 0:
                    continue
                ratio = (acc[i][cur] - acc[i][j]) / saved
                if best is None or ratio < best[0]:
                    best = (ratio, i, j)
        if best is None:
            return None
        cols[best[1]] = best[2]


def evolution(
    table: AccuracyTable,
    budgets: dict[str, float],
    population_size: int = 100,
    generations: int = 500,
    mutate_prob: float = 0.1,
    parent_ratio: float = 0.25,
    mutation_ratio: float = 0.5,
    seed: int = 0,
    max_tries: int = 10_000,
) -> Result:
    """Once-for-All's regularized evolution on the table (accuracy = the table score)."""
    rng = random.Random(seed)
    allowed = _allowed(table)
    kinds = list(budgets)
    # costs as arrays so that a sample's cost is one fancy-indexing sum
    width = len(table.candidates)
    mats = {
        k: np.array([[0.0 if v is None else v for v in row] for row in table.cost[k]])
        for k in kinds
    }
    rows = np.arange(table.num_layers)
    base = {k: table.base_cost[k] for k in kinds}
    accuracy = np.array([[0.0 if a is None else a for a in row] for row in table.accuracy])
    assert width == accuracy.shape[1]

    def feasible(sample: list[int]) -> bool:
        return all(base[k] + mats[k][rows, sample].sum() <= budgets[k] for k in kinds)

    def redraw(make) -> list[int] | None:
        for _ in range(max_tries):
            sample = make()
            if feasible(sample):
                return sample
        return None

    def random_sample() -> list[int]:
        return [rng.choice(a) for a in allowed]

    def mutate(parent: list[int]) -> list[int]:
        return [
            rng.choice(a) if rng.random() < mutate_prob else c
            for c, a in zip(parent, allowed, strict=True)
        ]

    def crossover(p1: list[int], p2: list[int]) -> list[int]:
        return [rng.choice((a, b)) for a, b in zip(p1, p2, strict=True)]

    def score(sample: list[int]) -> float:
        return float(accuracy[rows, sample].sum())

    mutation_numbers = int(round(mutation_ratio * population_size))
    parents_size = int(round(parent_ratio * population_size))
    population = []
    for _ in range(population_size):
        sample = redraw(random_sample)
        if sample is None:
            return None
        population.append((score(sample), sample))
    best = max(population)
    for _ in range(generations):
        parents = sorted(population, key=lambda p: p[0], reverse=True)[:parents_size]
        if parents[0][0] > best[0]:
            best = parents[0]
        population = list(parents)
        for j in range(population_size):
            if j < mutation_numbers:
                par = rng.choice(parents)[1]
                child = redraw(lambda par=par: mutate(par)) or par
            else:
                p1, p2 = rng.choice(parents)[1], rng.choice(parents)[1]
                child = redraw(lambda p1=p1, p2=p2: crossover(p1, p2)) or p1
            population.append((score(child), child))
    best = max([best, *population], key=lambda p: p[0])
    s, c = evaluate(table, best[1])
    return best[1], s, c


@contextlib.contextmanager
def _quiet():
    """Silence file descriptors 1 and 2: HiGHS's C++ side prints debug lines of its own."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def milp(table: AccuracyTable, budgets: dict[str, float]) -> Result:
    """HiGHS on binary x[l, c]: one candidate per layer, one row per budget."""
    from scipy.optimize import Bounds, LinearConstraint
    from scipy.optimize import milp as highs_milp

    allowed = _allowed(table)
    index = [(i, j) for i, cols in enumerate(allowed) for j in cols]
    n = len(index)
    one_hot = np.zeros((table.num_layers, n))
    for v, (i, _) in enumerate(index):
        one_hot[i, v] = 1
    constraints = [LinearConstraint(one_hot, 1, 1)]
    for k, b in budgets.items():
        row = np.array([[table.cost[k][i][j] for i, j in index]], dtype=float)
        constraints.append(LinearConstraint(row, -np.inf, b - table.base_cost[k]))
    scores = np.array([table.accuracy[i][j] for i, j in index])
    with _quiet():
        res = highs_milp(
            -scores,
            constraints=constraints,
            integrality=np.ones(n),
            bounds=Bounds(0, 1),
            options={"mip_rel_gap": 0},
        )
    if res.x is None:
        return None
    chosen = {i: j for v, (i, j) in enumerate(index) if res.x[v] > 0.5}
    cols = [chosen[i] for i in range(table.num_layers)]
    s, c = evaluate(table, cols)
    return cols, s, c
