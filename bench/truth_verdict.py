"""The verdict (issue 25, item 9): do tables rank networks against the committed truth?

Per table (one per search seed) and per budget of a ``ponas-truth/1`` file
(``bench/data/shapes-truth/shapes-truth-v1.json``, made by ``bench/shapes_truth.py``): the
truth is each drawn network's test accuracy averaged over its seeds; the figures are
Kendall's tau of the table's score and of MACs alone against it, their paired difference
with a 95% bootstrap interval (networks resampled), and the percentile among the band's
networks of what the table's solver deploys at the budget (its truth from the same file:
train it first with ``shapes_truth.py --deployed TABLE.json``). A budget whose networks the
file does not hold yet, or whose deployed network it has not trained, says so.

    python bench/truth_verdict.py var/s0/table.json var/s1/table.json var/s2/table.json
    python bench/truth_verdict.py --quick        # the committed truth and a synthetic table

The figures are ``ponas.audit.budget_figures`` (what ``ponas audit`` reports on a user's data);
the truth's own agreement (split halves of its seeds) is printed beside them, since a table
cannot be shown to rank better than its truth ranks itself.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ponas.audit import budget_figures, load_truth_file, tau  # noqa: E402
from ponas.solve import Infeasible, solve  # noqa: E402
from ponas.table import AccuracyTable  # noqa: E402

TRUTH = Path(__file__).resolve().parent / "data" / "shapes-truth" / "shapes-truth-v1.json"


def split_half_tau(acc) -> float | None:
    """Mean tau between the seed-means of two disjoint halves of the seeds, over every split."""
    k = acc.shape[0]
    if k < 2 or acc.shape[1] < 3:
        return None
    h = k // 2
    taus = []
    for first in itertools.combinations(range(k), h):
        rest = [s for s in range(k) if s not in first][:h]
        taus.append(tau(acc[list(first)].mean(axis=0), acc[rest].mean(axis=0)))
    return statistics.fmean(taus)


def verdict(tables: list[AccuracyTable], truth: dict, n_boot: int) -> list[dict]:
    rows = []
    for i, b in enumerate(truth["budgets"]):
        if len(b["pool"]) < 3:
            rows.append({"budget_index": i, "budget": b["budget"], "missing": "networks"})
            continue
        half = split_half_tau(b["acc"])
        for seed, table in enumerate(tables):
            col = {c: j for j, c in enumerate(table.candidates)}
            score = [
                sum(table.accuracy[layer][col[c]] for layer, c in enumerate(net))
                for net in b["pool"]
            ]
            try:
                pick = list(solve(table, {"macs": b["budget"]}).choices)
            except Infeasible:
                pick = None
            trained = truth["accuracy"].get(tuple(pick)) if pick else None
            row = {"budget_index": i, "budget": b["budget"], "table": seed, "pick": pick}
            row["truth_split_half_tau"] = half
            if trained is None:
                row["missing"] = "deployed"
                row["tau_table"] = tau(score, b["mean"])
                row["tau_macs"] = tau(b["macs"], b["mean"])
            else:
                deployed = statistics.fmean(trained[: b["acc"].shape[0]])
                row.update(budget_figures(b["mean"], score, b["macs"], deployed, n_boot=n_boot))
                row["deployed_truth"] = deployed
            rows.append(row)
    return rows


def report(rows: list[dict], truth: dict) -> None:
    seeds = len(truth["seeds"])
    print(f"truth: {truth['recipe']['epochs']} epochs from scratch, {seeds} seeds per network")
    print(
        f"{'budget':>8} {'table':>5} {'nets':>4} {'tau(table)':>10} {'tau(MACs)':>9} "
        f"{'difference [95% interval]':>27} {'deployed pct':>12} {'truth halves':>12}"
    )
    for r in rows:
        b = f"{r['budget'] / 1e6:.2f}M"
        if r.get("missing") == "networks":
            print(f"{b:>8}  (the truth file holds no networks of this band yet)")
            continue
        half = r["truth_split_half_tau"]
        half = "-" if half is None else f"{half:.2f}"
        if r.get("missing") == "deployed":
            print(
                f"{b:>8} {r['table']:>5} {'':>4} {r['tau_table']:>10.2f} {r['tau_macs']:>9.2f} "
                f"{'(deployed not trained)':>27} {'-':>12} {half:>12}"
            )
            continue
        lo, hi = r["difference_interval"]
        diff = f"{r['difference']:+.2f} [{lo:+.2f}, {hi:+.2f}]"
        print(
            f"{b:>8} {r['table']:>5} {r['networks']:>4} {r['tau_table']:>10.2f} "
            f"{r['tau_macs']:>9.2f} {diff:>27} {r['deployed_percentile']:>11.0f}% {half:>12}"
        )
    print(
        "goal per budget: tau(table) above tau(MACs) with the interval of the difference above "
        "zero, and the deployed network at or above the 75th percentile for every table"
    )


def quick_table(truth: dict) -> AccuracyTable:
    """A table whose entries are the truth's own per-candidate means (a smoke test)."""
    from ponas.space import SearchSpace

    doc = truth["doc"]
    space = SearchSpace.from_dict(doc["space"])
    sums: dict[tuple[int, str], list[float]] = {}
    for net, acc in truth["accuracy"].items():
        for layer, c in enumerate(net):
            sums.setdefault((layer, c), []).append(statistics.fmean(acc))
    accuracy = [
        [
            statistics.fmean(sums.get((i, c), [0.5])) if c in lay["candidates"] else None
            for c in space.candidates
        ]
        for i, lay in enumerate(doc["layers"])
    ]
    path = [
        max((a, c) for a, c in zip(row, space.candidates, strict=True) if a is not None)[1]
        for row in accuracy
    ]
    return AccuracyTable.build(space, accuracy, path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tables", nargs="*", help="table.json of searches (one per seed)")
    parser.add_argument("--truth", default=str(TRUTH), help="a ponas-truth/1 file")
    parser.add_argument("--boot", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument("--json", help="write every figure here")
    parser.add_argument("--quick", action="store_true", help="the truth's own means as a table")
    args = parser.parse_args()
    seeds = len(json.loads(Path(args.truth).read_text())["seeds"])
    truth = load_truth_file(args.truth, min_seeds=seeds)  # networks with every seed
    if args.quick:
        tables = [quick_table(truth)]
    elif not args.tables:
        parser.error("give table.json files (or --quick)")
    else:
        tables = [AccuracyTable.load(p) for p in args.tables]
    rows = verdict(tables, truth, 200 if args.quick else args.boot)
    report(rows, truth)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
