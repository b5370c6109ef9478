"""Choosing a network for a budget: the exact solver against greedy and evolution.

On a 19 x 12 table shaped like the ``imagenet`` space (costs from the spec, accuracies random
with a seed, a synthetic latency table) this measures, in one run:

* the whole MACs Pareto frontier, built cold, and the solver's time per MACs budget (20
  budgets between the smallest and the largest network);
* greedy downgrading and Once-for-All's regularized evolution on the same budgets (evolution
  on a few of them: it takes about a second each), their time per budget and the scores reached:
  the solver's is never lower;
* 2 budgets (MACs + params) and 3 (+ latency) at once: median and worst time, next to
  scipy's HiGHS ``milp`` on the same problems (floating point, not exact).

    python bench/deploy_speed.py [--quick] [--seed N] [--correlated]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is a folder of scripts

import baselines  # noqa: E402

from ponas import solve as solve_module  # noqa: E402
from ponas.solve import Infeasible, pareto_frontier, solve  # noqa: E402
from ponas.space import load_space  # noqa: E402
from ponas.table import AccuracyTable  # noqa: E402
from ponas.units import format_cost  # noqa: E402


def imagenet_table(seed: int, correlated: bool) -> AccuracyTable:
    """Costs of the imagenet space; random accuracies; a latency table that grows with MACs.

    ``correlated`` makes accuracy grow with a block's MACs (plus noise): the hard case for
    every exact method, since many networks then score almost alike.
    """
    from ponas.cost import LUT_FORMAT, cost_tables

    space = load_space("imagenet")
    rng = random.Random(seed)
    macs = cost_tables(space)[0]["macs"]
    accuracy = []
    for row in macs:
        lo, hi = min(row), max(row)
        if correlated:
            accuracy.append([0.6 + 0.1 * (m - lo) / (hi - lo) + 0.02 * rng.random() for m in row])
        else:
            accuracy.append([rng.uniform(0.6, 0.75) for _ in row])
    lut = {
        "format": LUT_FORMAT,
        "space": space.name,
        "device": "synthetic",
        "batch": 1,
        "candidates": list(space.candidates),
        "base_ms": 1.5,
        "layers": [
            [
                m / 1e7 * (1 + 0.3 * rng.random()) + (0.05 if name.endswith("_se") else 0.0)
                for m, name in zip(row, space.candidates, strict=True)
            ]
            for row in macs
        ],
    }
    best = [space.candidates[max(range(12), key=row.__getitem__)] for row in accuracy]
    return AccuracyTable.build(space, accuracy, best, {"seed": seed}, latency_lut=lut)


def extremes(table: AccuracyTable, kind: str) -> tuple[float, float]:
    rows = table.cost[kind]
    base = table.base_cost[kind]
    return (
        base + sum(min(v for v in r if v is not None) for r in rows),
        base + sum(max(v for v in r if v is not None) for r in rows),
    )


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.2f} ms"


def gap_text(gaps: list[float]) -> str:
    return f"mean {statistics.mean(gaps):.4f}, max {max(gaps):.4f}"


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer budgets and generations")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--correlated", action="store_true", help="accuracy grows with MACs (the hard case)"
    )
    args = parser.parse_args()
    n_multi = 10 if args.quick else 100
    evo_budgets = 1 if args.quick else 3
    generations = 100 if args.quick else 500

    table = imagenet_table(args.seed, args.correlated)
    lo, hi = extremes(table, "macs")
    budgets = [lo + (hi - lo) * (i + 1) / 21 for i in range(20)]
    kind_of_table = "correlated" if args.correlated else "random"
    print(
        f"imagenet space, {table.num_layers} layers x {len(table.candidates)} candidates, "
        f"{kind_of_table} accuracies (seed {args.seed}); networks {format_cost('macs', lo)} "
        f"to {format_cost('macs', hi)}"
    )

    # ---- one budget: the frontier, then a binary search per budget ----------------------------
    import scipy.optimize  # noqa: F401  (imported up front: its import is not solver time)

    solve_module._CACHE.clear()
    front, cold = timed(pareto_frontier, table, "macs")
    solve_module._CACHE.clear()
    prob = solve_module._problem(table)
    _, build = timed(prob.frontier, "score", "macs")
    solver, solver_times = [], []
    for b in budgets:
        sel, t = timed(solve, table, {"macs": b})
        solver.append(sel)
        solver_times.append(t)
    print(
        f"\nMACs frontier: {len(front)} points, built cold in {ms(build).strip()} "
        f"({ms(cold).strip()} with the {len(front)} networks listed)"
    )

    greedy_res, greedy_times = [], []
    for b in budgets:
        res, t = timed(baselines.greedy, table, {"macs": b})
        greedy_res.append(res)
        greedy_times.append(t)
    # evolution on budgets that bind (above ~400M MACs the best path itself fits)
    binding = [i for i, sel in enumerate(solver) if sel.loss > 0]
    picks = [binding[(2 * k + 1) * len(binding) // (2 * evo_budgets)] for k in range(evo_budgets)]
    evo_res, evo_times = {}, []
    for i in picks:
        res, t = timed(baselines.evolution, table, {"macs": budgets[i]}, 100, generations)
        evo_res[i] = res
        evo_times.append(t)

    print(f"\n{'MACs budget':>12} {'solver':>9} {'greedy':>9} {'evolution':>9}   (table score)")
    for i, b in enumerate(budgets):
        g = greedy_res[i][1] if greedy_res[i] else float("nan")
        e = " " * 9 if i not in evo_res else f"{evo_res[i][1]:9.4f}" if evo_res[i] else "     none"
        print(f"{format_cost('macs', b):>12} {solver[i].score:9.4f} {g:9.4f} {e}")
    never_lower = all(
        solver[i].score >= r[1] - 1e-12
        for res in (dict(enumerate(greedy_res)), evo_res)
        for i, r in res.items()
        if r
    )
    gaps = [solver[i].score - r[1] for i, r in enumerate(greedy_res) if r]
    evo_gaps = [solver[i].score - r[1] for i, r in evo_res.items() if r]
    med = statistics.median(solver_times)
    print(f"\n{'method':<28} {'time per budget':>16} {'vs solver':>11} {'score below solver':>20}")
    print(f"{'exact solver (warm)':<28} {ms(med):>16} {'1x':>11} {'-':>20}")
    print(
        f"{'greedy downgrade':<28} {ms(statistics.median(greedy_times)):>16} "
        f"{statistics.median(greedy_times) / med:>10.0f}x "
        f"{gap_text(gaps):>20}"
    )
    print(
        f"{f'evolution ({generations} generations)':<28} {ms(statistics.mean(evo_times)):>16} "
        f"{statistics.mean(evo_times) / med:>10.0f}x "
        f"{gap_text(evo_gaps):>20}"
    )
    print(f"solver never lower: {'yes' if never_lower else 'NO'}")
    if None in evo_res.values():
        print(
            "evolution found no network within some budgets: its random draws (10,000 per "
            "sample) never fit them"
        )

    # ---- several budgets at once ----------------------------------------------------------------
    rng = random.Random(args.seed + 1)
    ranges = {k: extremes(table, k) for k in table.cost_kinds}
    print(
        f"\n{'budgets at once':<22} {'problems':>8} {'infeasible':>10} {'median':>11} "
        f"{'worst':>11} {'milp median':>12} {'milp worst':>11} {'milp differs':>12}"
    )
    for kinds in (["macs", "params"], ["macs", "params", "latency_ms"]):
        times, milp_times, infeasible, differs = [], [], 0, 0
        for _ in range(n_multi):
            b = {
                k: ranges[k][0] + rng.uniform(0.02, 0.7) * (ranges[k][1] - ranges[k][0])
                for k in kinds
            }
            try:
                sel, t = timed(solve, table, b)
            except Infeasible:
                infeasible += 1
                sel, t = None, None
            res, tm = timed(baselines.milp, table, b)
            milp_times.append(tm)
            if t is not None:
                times.append(t)
                if res is None or abs(res[1] - sel.score) > 1e-9:
                    differs += 1
        print(
            f"{' + '.join(kinds):<22} {n_multi:>8} {infeasible:>10} "
            f"{ms(statistics.median(times)):>11} {ms(max(times)):>11} "
            f"{ms(statistics.median(milp_times)):>12} {ms(max(milp_times)):>11} {differs:>12}"
        )


if __name__ == "__main__":
    main()
