"""Does the table pick good networks? Deployed vs random architectures on digits.

From one search (a given ``--run`` folder, or a fresh ``digits`` search), deploy at three MACs
budgets and, at each, compare the deployed network with random architectures whose cost fits
the same budget. Every network is built the same way: weights inherited from the same
supernet, BN recalibrated, fine-tuned ``--finetune-epochs``, evaluated on the test split.
Prints the deployed accuracy, the random ones' mean and max, and Kendall's tau between the
table's predicted score and the measured accuracy over all networks.

    python bench/deploy_quality.py [--run runs/digits] [--quick]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
from pathlib import Path

from scipy.stats import kendalltau

from ponas.deploy import specialize
from ponas.search import load_supernet, run_search
from ponas.solve import pareto_frontier, solve
from ponas.table import AccuracyTable


def score(table: AccuracyTable, choices: list[str]) -> float:
    return sum(table.accuracy[i][table.candidates.index(c)] for i, c in enumerate(choices))


def macs(table: AccuracyTable, choices: list[str]) -> float:
    cols = [table.candidates.index(c) for c in choices]
    return table.base_cost["macs"] + sum(table.cost["macs"][i][j] for i, j in enumerate(cols))


def random_within(table: AccuracyTable, budget: float, rng: random.Random, tries=200_000):
    allowed = [
        [c for c, a in zip(table.candidates, row, strict=True) if a is not None]
        for row in table.accuracy
    ]
    for _ in range(tries):
        choices = [rng.choice(options) for options in allowed]
        if macs(table, choices) <= budget:
            return choices
    raise RuntimeError(f"no random architecture within {budget:.0f} MACs in {tries} draws")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="a finished search folder (table.json, supernet.pt)")
    parser.add_argument("--random", type=int, default=10, help="random networks per budget")
    parser.add_argument("--finetune-epochs", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="3 random networks, no fine-tune")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.quick:
        args.random, args.finetune_epochs = 3, 0

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(args.run) if args.run else Path(tmp) / "search"
        if not args.run:
            print("no --run given: searching digits first (a few minutes)")
            run_search("digits", {"seed": args.seed}, run)
        table = AccuracyTable.load(run / "table.json")
        supernet = load_supernet(run / "supernet.pt")
        frontier = pareto_frontier(table, "macs")
        lo, hi = frontier[0].cost["macs"], frontier[-1].cost["macs"]
        budgets = [lo + f * (hi - lo) for f in (0.25, 0.5, 0.75)]
        rng = random.Random(args.seed)
        predicted, measured = [], []

        def build(choices: list[str]) -> float:
            _, metrics = specialize(supernet, choices, finetune_epochs=args.finetune_epochs)
            predicted.append(score(table, choices))
            measured.append(metrics["top1"])
            return metrics["top1"]

        print(
            f"{'budget (MACs)':>14} {'deployed':>9} {'random mean':>12} {'random max':>11} "
            f"{'>= mean':>8}"
        )
        for budget in budgets:
            deployed = build(solve(table, {"macs": budget}).choices)
            randoms = [build(random_within(table, budget, rng)) for _ in range(args.random)]
            mean, best = statistics.mean(randoms), max(randoms)
            print(
                f"{budget / 1e6:>13.2f}M {100 * deployed:>8.2f}% {100 * mean:>11.2f}% "
                f"{100 * best:>10.2f}% {'yes' if deployed >= mean else 'NO':>8}"
            )
        tau = kendalltau(predicted, measured)
        print(
            f"Kendall's tau (predicted score vs measured top-1, {len(measured)} networks): "
            f"{tau.statistic:.3f} (p = {tau.pvalue:.3g})"
        )
        print(f"fine-tune epochs per network: {args.finetune_epochs}")


if __name__ == "__main__":
    main()
