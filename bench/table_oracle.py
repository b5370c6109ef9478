"""How precise must table entries be? The table policy on NAS-Bench-Macro's truth, in seconds.

The table is built by the product's own code (:func:`ponas.search.policy.build_table`, the
policy stage 2 uses) with :class:`ponas.benchmarks.macro.MacroEvaluator` in place of the
supernet's fine-tune-and-score, and deployed by the product's :func:`ponas.solve.solve`. Per
budget (FLOPs and params at the 20/40/60/80% quantiles, cost band [0.9 B, B]), averaged over
repetitions (suffix draws and noise): Kendall's tau of the table score against the
benchmark's mean accuracy, of FLOPs alone and params alone (the baselines, same run), the
deployed network's percentile among the networks within the budget and its gap to the best.

    python bench/table_oracle.py            # 20 repetitions, every grid (about a minute)
    python bench/table_oracle.py --quick    # 3 repetitions, the default policy only
    python bench/table_oracle.py --json out.json

Noise ``s`` (points of accuracy, sd of a Gaussian) is added per evaluation (one suffix or
context: what more suffixes average away) or per candidate (what one fine-tune adds, which
more suffixes do not average). The noise budget is the largest ``s`` at which the table
beats cost alone (the better of FLOPs and params) at every budget and deploys at or above
the 75th percentile on average at every budget; it is also given relative to the median
spread of a row's exact entries, the ratio that carries over to other data.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ponas.benchmarks.macro import (  # noqa: E402
    ALLOWED,
    CANDIDATES,
    MacroBenchmark,
    MacroEvaluator,
    budgets,
    judge,
)
from ponas.search.policy import build_table  # noqa: E402

NOISES = (0.0, 0.25, 0.5, 1.0, 2.0, 3.0)
SUFFIXES = (1, 2, 4, 8, 16)


def run_cell(bench, reps, k, noise=0.0, candidate_noise=0.0, **policy) -> dict:
    """Mean figures of one setting over ``reps`` tables, per budget."""
    per_budget: dict[str, list[dict]] = {}
    spreads, sds = [], []
    for rep in range(reps):
        evaluator = MacroEvaluator(bench, noise, candidate_noise, seed=10_000 + rep)
        built = build_table(list(CANDIDATES), ALLOWED, evaluator, k, random.Random(rep), **policy)
        table = bench.table(built.rows, built.stderr, built.path)
        spreads += [100 * (max(r) - min(r)) for r in built.rows]
        sds += [100 * statistics.stdev(r) for r in built.rows]
        for kind, b in budgets(bench):
            per_budget.setdefault(f"{kind}<={b:.4g}", []).append(judge(bench, table, kind, b))
    out = {
        name: {key: statistics.fmean(r[key] for r in rows) for key in rows[0]}
        for name, rows in per_budget.items()
    }
    return {
        "budgets": out,
        "row_spread_median": statistics.median(spreads),
        "row_sd_median": statistics.median(sds),
    }


def summary(cell: dict) -> dict:
    """Ranges over the FLOPs and over the params budgets; whether it meets the goal."""
    b = cell["budgets"]

    def rng(kind, key):
        vals = [v[key] for name, v in b.items() if name.startswith(kind)]
        return min(vals), max(vals)

    beats = all(v["tau_table"] > max(v["tau_flops"], v["tau_params"]) for v in b.values())
    top = all(v["percentile"] >= 75 for v in b.values())
    return {
        "tau_flops_budgets": rng("macs", "tau_table"),
        "tau_params_budgets": rng("params", "tau_table"),
        "percentile": (
            min(v["percentile"] for v in b.values()),
            max(v["percentile"] for v in b.values()),
        ),
        "gap": max(v["gap"] for v in b.values()),
        "beats_cost_everywhere": beats,
        "top_quarter_everywhere": top,
    }


def fmt(lo_hi, digits=2) -> str:
    return f"{lo_hi[0]:.{digits}f}-{lo_hi[1]:.{digits}f}"


def row_text(label: str, cell: dict) -> str:
    s = summary(cell)
    ok = "yes" if s["beats_cost_everywhere"] and s["top_quarter_everywhere"] else "no"
    return (
        f"{label:<34} {fmt(s['tau_flops_budgets']):>11} {fmt(s['tau_params_budgets']):>11} "
        f"{fmt(s['percentile'], 0):>8} {s['gap']:>6.2f} {ok:>5}"
    )


HEADER = (
    f"{'setting':<34} {'tau FLOPs-B':>11} {'tau par-B':>11} {'pctile':>8} {'gap':>6} {'goal':>5}"
)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 repetitions, default policy only")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--json", type=Path, help="write every figure here")
    args = ap.parse_args(argv)
    reps = 3 if args.quick else args.reps
    started = time.perf_counter()
    bench = MacroBenchmark()
    results: dict[str, dict] = {}

    base = judge_baselines(bench)
    print(f"NAS-Bench-Macro: {len(bench.codes)} encodings; {reps} repetitions per setting")
    print("cost alone (tau against the truth within each band):")
    for name, v in base.items():
        print(
            f"  {name:<22} FLOPs {v['tau_flops']:.2f}  params {v['tau_params']:.2f}  ({v['band']} networks)"
        )
    print("\n" + HEADER)

    grids = [
        (
            "default policy (progressive, shared, no replacement), noise per evaluation",
            [
                (f"k={k} s={s}", {"k": k, "noise": s})
                for k in (SUFFIXES if not args.quick else (4,))
                for s in (NOISES if not args.quick else (0.0, 0.5, 1.0))
            ],
        )
    ]
    if not args.quick:
        grids += [
            (
                "noise per candidate (fine-tune), k=4 and 16",
                [
                    (f"k={k} cand-s={s}", {"k": k, "candidate_noise": s})
                    for k in (4, 16)
                    for s in NOISES[1:]
                ],
            ),
            (
                "policy variants, noise per evaluation",
                [
                    (f"{name} k={k} s={s}", {"k": k, "noise": s, **pol})
                    for name, pol in (
                        ("random context", {"context": "random"}),
                        ("independent suffixes", {"shared": False}),
                        ("with replacement", {"replace": True}),
                    )
                    for k in (4, 8)
                    for s in (0.0, 0.5, 1.0, 2.0)
                ],
            ),
        ]
    for title, cells in grids:
        print(f"-- {title}")
        for label, params in cells:
            k = params.pop("k")
            cell = run_cell(bench, reps, k, **params)
            results[label] = {**cell, "summary": summary(cell)}
            print(row_text(label, cell))

    print(
        "\nnoise budget (largest s meeting the goal: beats cost alone at every budget and "
        "deploys at >= 75th percentile on average at every budget):"
    )
    for k in SUFFIXES if not args.quick else (4,):
        largest = None  # every smaller noise meets the goal too
        for s in NOISES:
            cell = results.get(f"k={k} s={s}")
            if cell is None:
                break
            if not (
                cell["summary"]["beats_cost_everywhere"]
                and cell["summary"]["top_quarter_everywhere"]
            ):
                break
            largest = s
        spread = results[f"k={k} s=0.0"]["row_spread_median"]
        ratio = (
            f"{largest / spread:.2f} x the median spread of a row's exact entries ({spread:.2f} points)"
            if largest is not None
            else "none"
        )
        print(f"  k={k:<2}: s = {largest} points; {ratio}")
        if largest is not None:  # what `ponas search --stage2-only` measures (ponas/noise.py)
            sd = results[f"k={k} s=0.0"]["row_sd_median"]
            print(
                f"        entry noise s/sqrt(k) = {largest / k**0.5:.2f} points = "
                f"{largest / k**0.5 / sd:.2f} x the median sd of a row's exact entries "
                f"({sd:.2f} points)"
            )
    print(f"\n{time.perf_counter() - started:.1f} s")
    if args.json:
        args.json.write_text(json.dumps({"baselines": base, "cells": results}, indent=1))
    return 0


def judge_baselines(bench) -> dict:
    """Cost alone at every budget (independent of any table)."""
    built = build_table(list(CANDIDATES), ALLOWED, MacroEvaluator(bench), 1, random.Random(0))
    table = bench.table(built.rows, built.stderr, built.path)
    return {f"{k}<={b:.4g}": judge(bench, table, k, b) for k, b in budgets(bench)}


if __name__ == "__main__":
    raise SystemExit(main())
