"""Does the table predict accuracy? Table score vs networks trained from scratch, cost-matched.

For every search seed, search the ``shapes`` preset (data where networks differ). At three
MACs budgets B, draw networks uniformly among all those whose cost lies in [0.9 B, B] and
measure their ground truth: test accuracy after training each from scratch with one fixed
recipe (``specialize`` from a freshly initialized supernet: SGD, cosine, ``--epochs``). The
pool is the same for every seed (ground truth does not depend on the search), so each network
is trained once. Then, per budget, Kendall's tau between ground truth and

- ``table``: the table's score, sum_l A[l][c_l] (what the solver maximizes);
- ``macs``: the network's MACs alone (the baseline a table must beat inside a cost band);
- ``one-shot``: the stage-1 supernet's accuracy of the whole path on the validation split
  (weights inherited, BN recalibrated), the classic one-shot predictor;
- ``inherited``: the same weights measured on the test split, to show how far the cheap
  proxy is from the truth;

averaged over the seeds, with a 95% bootstrap interval (resampling the pool's networks), and
the percentile of the table-deployed network (``solve`` at B) among the cost-matched networks
(100 = better than all of them). Figures for docs/table-fidelity.md:

    python bench/table_fidelity.py                     # 3 seeds x 3 budgets (about an hour)
    python bench/table_fidelity.py --quick             # 1 seed, tiny pool and recipe (minutes)
    python bench/table_fidelity.py --set suffix_samples=8 --cache var/fidelity-truth.json

``--set`` changes the search settings (the predictor), never the ground truth; ``--cache``
keeps the ground truth between runs so that predictor variants only pay for their searches.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from ponas.audit import (  # one definition: the audit's
    Recipe,
    all_networks,
    percentile,
    table_score,
    tau,
)
from ponas.audit import train_from_scratch as audit_train
from ponas.deploy import specialize
from ponas.files import atomic_write_text
from ponas.search import load_checkpoint, make_context, run_search
from ponas.solve import solve
from ponas.space import SearchSpace
from ponas.supernet import Supernet

PREDICTORS = ("table", "macs", "one-shot", "inherited")
BUDGET_FRACTIONS = (0.3, 0.55, 0.8)  # of the way from the cheapest to the dearest network


def train_from_scratch(
    space: SearchSpace, choices: list[str], data, dataset: str, args: argparse.Namespace
) -> float:
    """Ground truth: test accuracy of ``choices`` trained from scratch with the fixed recipe
    (the audit's, :func:`ponas.audit.train_from_scratch` at seed 0: one implementation)."""
    recipe = Recipe(epochs=args.epochs, lr=args.lr, init_seed=args.init_seed)
    return audit_train(space, choices, data, dataset, recipe, seed=0)


def one_shot(supernet: Supernet, choices: list[str], data, split: str, seed: int) -> float:
    """Accuracy of a path with weights inherited from ``supernet`` (BN recalibrated) on
    ``split``: the validation split is what a predictor may see, the test split is not."""
    data = dataclasses.replace(data, test=getattr(data, split))
    _, metrics = specialize(supernet, choices, overrides={"seed": seed}, data=data)
    return metrics["top1"]


def summarize(budget_rows: list[dict], n_boot: int, rng: np.random.Generator) -> dict:
    """Mean over seeds of each predictor's tau and of the deployed percentile, with 95%
    bootstrap intervals from resampling the pool's networks (the same draw for every seed)."""
    truth = np.asarray(budget_rows[0]["truth"])
    n = len(truth)

    def stats(idx: np.ndarray) -> dict[str, float]:
        out = {}
        for p in PREDICTORS:
            out[p] = statistics.mean(tau(np.asarray(r[p])[idx], truth[idx]) for r in budget_rows)
        out["table - macs"] = out["table"] - out["macs"]
        out["percentile"] = statistics.mean(
            percentile(r["deployed_truth"], list(truth[idx])) for r in budget_rows
        )
        return out

    point = stats(np.arange(n))
    boots = [stats(rng.integers(0, n, n)) for _ in range(n_boot)]
    return {
        k: (
            v,
            float(np.percentile([b[k] for b in boots], 2.5)),
            float(np.percentile([b[k] for b in boots], 97.5)),
        )
        for k, v in point.items()
    }


def report(results: dict, args: argparse.Namespace, n_boot: int) -> None:
    """Print the table over the seeds measured so far."""
    seeds = [r["seed"] for r in results["budgets"][0]["rows"]]
    print(
        f"\ntable fidelity on {args.preset}: seeds {seeds}, {args.per_budget} cost-matched "
        f"networks per budget trained from scratch ({args.epochs} epochs, lr {args.lr}); "
        f"search settings: {results['overrides'] or 'the preset'}"
    )
    print(
        f"{'budget':>8} {'in band':>7} {'truth range':>13} {'predictor':>12} "
        f"{'tau (mean of seeds)':>20} {'95% CI':>16}"
    )
    for b in results["budgets"]:
        truth = b["rows"][0]["truth"]
        summary = summarize(b["rows"], n_boot, np.random.default_rng(0))
        b["summary"] = summary
        span = f"{100 * min(truth):.1f}-{100 * max(truth):.1f}%"
        for i, key in enumerate([*PREDICTORS, "table - macs"]):
            v, lo, hi = summary[key]
            head = f"{b['budget'] / 1e6:>7.2f}M {b['matched']:>7} {span:>13}" if i == 0 else ""
            print(f"{head:30} {key:>12} {v:>20.3f} {f'[{lo:.3f}, {hi:.3f}]':>16}")
        v, lo, hi = summary["percentile"]
        per_seed = ", ".join(f"{percentile(r['deployed_truth'], truth):.0f}" for r in b["rows"])
        print(
            f"{'':30} {'deployed pct':>12} {v:>20.1f} {f'[{lo:.1f}, {hi:.1f}]':>16}"
            f"   per seed: {per_seed}"
        )
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="shapes")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--per-budget", type=int, default=10, help="cost-matched networks")
    parser.add_argument("--epochs", type=int, default=3, help="from-scratch training epochs")
    parser.add_argument("--lr", type=float, default=0.1, help="from-scratch learning rate")
    parser.add_argument("--init-seed", type=int, default=1)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="search setting (the predictor), e.g. suffix_samples=8",
    )
    parser.add_argument("--cache", help="JSON file keeping the ground truth between runs")
    parser.add_argument("--out", help="write every measurement here (JSON)")
    parser.add_argument("--boot", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument(
        "--quick", action="store_true", help="1 seed, 3 networks per budget, 1 epoch, short search"
    )
    args = parser.parse_args()
    overrides = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
    if args.quick:
        args.seeds, args.per_budget, args.epochs = args.seeds[:1], 3, 1
        overrides = {"epochs": 2, "finetune_steps": 10, "suffix_samples": 2, **overrides}
    # One thread: these networks are too small to gain from more, and on a shared machine
    # two spinning OpenMP threads per process made stage 1 about 20x slower (measured).
    torch.set_num_threads(args.threads)
    cache_file = Path(args.cache) if args.cache else None
    cache = json.loads(cache_file.read_text()) if cache_file and cache_file.exists() else {}
    recipe = f"{args.preset}/e{args.epochs}/lr{args.lr}/init{args.init_seed}"
    t0 = time.perf_counter()
    results: dict = {"args": vars(args), "overrides": overrides, "budgets": []}

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:6.0f}s] {msg}", file=sys.stderr, flush=True)

    data0 = make_context(args.preset, {"seed": 0}).data  # ground truth: one fixed split
    with tempfile.TemporaryDirectory() as tmp:
        for n_seed, seed in enumerate(args.seeds):
            log(f"searching {args.preset}, seed {seed}")
            out = Path(tmp) / f"seed{seed}"
            table = run_search(args.preset, {**overrides, "seed": seed}, out)
            stage1 = load_checkpoint(out / "checkpoints" / "stage1.pt")
            supernet = Supernet(SearchSpace.from_dict(stage1["space"]))
            supernet.load_state_dict(stage1["model"])
            data = make_context(args.preset, {**overrides, "seed": seed}).data
            results.setdefault("tables", {})[seed] = table.to_dict()
            if n_seed == 0:  # the space, its budgets and the pools are the same for every seed
                space, dataset = table.search_space(), table.meta["dataset"]
                archs, macs = all_networks(table)
                macs_of = dict(zip(archs, macs.tolist(), strict=True))
                lo, hi = macs.min(), macs.max()
                rng = random.Random(0)
                for frac in BUDGET_FRACTIONS:
                    budget = lo + frac * (hi - lo)
                    matched = [a for a, m in macs_of.items() if 0.9 * budget <= m <= budget]
                    pool = rng.sample(matched, min(args.per_budget, len(matched)))
                    results["budgets"].append(
                        {"budget": budget, "matched": len(matched), "pool": pool, "rows": []}
                    )

            def truth_of(arch: tuple[int, ...], space=space, dataset=dataset) -> float:
                choices = [space.candidates[j] for j in arch]
                key = f"{recipe}/{','.join(choices)}"
                if key not in cache and cache_file and cache_file.exists():
                    cache.update(json.loads(cache_file.read_text()))  # another run's figures
                if key not in cache:
                    log(f"training {','.join(choices)} from scratch ({args.epochs} epochs)")
                    cache[key] = train_from_scratch(space, choices, data0, dataset, args)
                    if cache_file:  # merged with what other runs added meanwhile
                        cache_file.parent.mkdir(parents=True, exist_ok=True)
                        if cache_file.exists():
                            cache.update({**json.loads(cache_file.read_text()), **cache})
                        atomic_write_text(cache_file, json.dumps(cache, indent=1))
                return cache[key]

            for b in results["budgets"]:
                pool = b["pool"]
                names = [[table.candidates[j] for j in a] for a in pool]
                deployed = solve(table, {"macs": b["budget"]})
                b["rows"].append(
                    {
                        "seed": seed,
                        "truth": [truth_of(a) for a in pool],
                        "table": [table_score(table, a) for a in pool],
                        "macs": [macs_of[a] for a in pool],
                        "one-shot": [one_shot(supernet, c, data, "val", seed) for c in names],
                        "inherited": [one_shot(supernet, c, data, "test", seed) for c in names],
                        "deployed": deployed.choices,
                        "deployed_macs": deployed.cost["macs"],
                        "deployed_truth": truth_of(tuple(deployed.indices)),
                    }
                )
                log(f"seed {seed}, budget {b['budget'] / 1e6:.2f}M measured")
                if args.out:  # after every step, so that an interrupted run leaves its figures
                    Path(args.out).write_text(json.dumps(results, indent=1, default=float))
            report(results, args, args.boot)
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
