"""How reproducible is the ground truth of bench/table_fidelity.py? Its noise ceiling.

Each cost-matched network of a fidelity run (its ``--out`` JSON) is trained from scratch
again with other initialization seeds (same recipe, same data). Per budget this prints
Kendall's tau between the rankings of two initializations, with a 95% bootstrap interval,
and the mean spread of one network's accuracy over its initializations. No predictor can be
expected to rank the networks better than the ground truth agrees with itself:

    python bench/table_fidelity.py --cache var/fidelity-truth.json --out var/fidelity-base.json
    python bench/truth_noise.py var/fidelity-base.json --cache var/fidelity-truth.json

Without a fidelity run it draws ``--networks`` networks of the preset's space at random (no
cost band). ``--quick`` measures three networks with one epoch (a smoke test, ``make bench``).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from table_fidelity import tau, train_from_scratch  # noqa: E402

from ponas.files import atomic_write_text  # noqa: E402
from ponas.search import make_context  # noqa: E402
from ponas.space import SearchSpace, load_space  # noqa: E402
from ponas.table import AccuracyTable  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "fidelity", nargs="?", help="the --out JSON of a bench/table_fidelity.py run"
    )
    parser.add_argument("--preset", default="shapes", help="without a fidelity run")
    parser.add_argument("--networks", type=int, default=10, help="without a fidelity run")
    parser.add_argument("--init-seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--cache", help="the ground-truth cache shared with table_fidelity.py")
    parser.add_argument(
        "--rescore",
        nargs="*",
        default=[],
        metavar="FIDELITY_JSON",
        help="also rank the predictors of these fidelity runs (same pools) against the truth "
        "averaged over the initialization seeds",
    )
    parser.add_argument("--boot", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.fidelity:
        run = json.loads(Path(args.fidelity).read_text())
        ran = run["args"]
        table = AccuracyTable.from_dict(next(iter(run["tables"].values())))
        space: SearchSpace = table.search_space()
        dataset = table.meta["dataset"]
        budgets = run["budgets"]
    else:  # networks drawn at random from the preset's space, in one row
        ran = {"preset": args.preset, "epochs": 3, "lr": 0.1}
        space, dataset = load_space(args.preset), None
        rng = random.Random(0)
        allowed = [
            [j for j, c in enumerate(space.candidates) if space.allowed(i, c)]
            for i in range(space.num_layers)
        ]
        pool = [[rng.choice(row) for row in allowed] for _ in range(args.networks)]
        budgets = [{"budget": float("nan"), "pool": pool}]
    dataset = dataset or space.dataset
    epochs = 1 if args.quick else ran["epochs"]
    data = make_context(ran["preset"], {"seed": 0}).data  # the fidelity bench's fixed split
    cache_file = Path(args.cache) if args.cache else None
    cache = json.loads(cache_file.read_text()) if cache_file and cache_file.exists() else {}
    budgets = budgets[:1] if args.quick else budgets
    t0 = time.perf_counter()

    def truth(arch: list[int], init_seed: int) -> float:
        choices = [space.candidates[j] for j in arch]
        key = f"{ran['preset']}/e{epochs}/lr{ran['lr']}/init{init_seed}/{','.join(choices)}"
        if key not in cache and cache_file and cache_file.exists():
            cache.update(json.loads(cache_file.read_text()))
        if key not in cache:
            print(
                f"[{time.perf_counter() - t0:6.0f}s] init {init_seed}: {','.join(choices)}",
                file=sys.stderr,
                flush=True,
            )
            recipe = argparse.Namespace(init_seed=init_seed, lr=ran["lr"], epochs=epochs)
            cache[key] = train_from_scratch(space, choices, data, dataset, recipe)
            if cache_file:
                cache.update({**json.loads(cache_file.read_text()), **cache})
                atomic_write_text(cache_file, json.dumps(cache, indent=1))
        return cache[key]

    print(
        f"ground truth reproducibility on {ran['preset']} ({epochs} epochs, lr {ran['lr']}), "
        f"initialization seeds {args.init_seeds}"
    )
    print(
        f"{'budget':>8} {'networks':>8} {'seeds':>7} {'tau':>7} {'95% CI':>16} "
        f"{'mean |diff|':>11} {'max |diff|':>10}"
    )
    rng = np.random.default_rng(0)
    mean_truth = []
    for b in budgets:
        pool = b["pool"][:3] if args.quick else b["pool"]
        label = "any" if b["budget"] != b["budget"] else f"{b['budget'] / 1e6:.2f}M"
        acc = np.array([[truth(a, s) for a in pool] for s in args.init_seeds])
        mean_truth.append(acc.mean(axis=0))
        n = len(pool)
        for i in range(1, len(args.init_seeds)):
            x, y = acc[0], acc[i]
            boots = [
                tau(x[idx], y[idx]) for idx in (rng.integers(0, n, n) for _ in range(args.boot))
            ]
            lo, hi = np.percentile(boots, [2.5, 97.5])
            diff = np.abs(x - y)
            print(
                f"{label:>8} {n:>8} {f'{args.init_seeds[0]},{args.init_seeds[i]}':>7} "
                f"{tau(x, y):>7.3f} {f'[{lo:.3f}, {hi:.3f}]':>16} "
                f"{100 * diff.mean():>10.1f}p {100 * diff.max():>9.1f}p",
                flush=True,
            )
    if args.fidelity:
        rescore([args.fidelity, *args.rescore], mean_truth, args)
    print(f"total {time.perf_counter() - t0:.0f} s")


def rescore(files: list[str], mean_truth: list[np.ndarray], args: argparse.Namespace) -> None:
    """Each run's predictors against the truth averaged over the initialization seeds: the
    mean over its search seeds of Kendall's tau, with a 95% bootstrap interval (networks)."""
    print(f"\npredictors against the mean of initializations {args.init_seeds}")
    print(f"{'run':>28} {'budget':>8} {'predictor':>10} {'tau':>7} {'95% CI':>16}")
    for file in files:
        run = json.loads(Path(file).read_text())
        name = Path(file).stem
        for b, truth in zip(run["budgets"], mean_truth, strict=False):
            n = len(truth)
            rng = np.random.default_rng(0)
            draws = [rng.integers(0, n, n) for _ in range(args.boot)]
            for key in ("table", "macs", "one-shot"):
                preds = [np.asarray(r[key]) for r in b["rows"]]

                def mean_tau(idx: np.ndarray, preds: list = preds, truth=truth) -> float:
                    return float(np.mean([tau(p[idx], truth[idx]) for p in preds]))

                lo, hi = np.percentile([mean_tau(i) for i in draws], [2.5, 97.5])
                print(
                    f"{name:>28} {b['budget'] / 1e6:>7.2f}M {key:>10} "
                    f"{mean_tau(np.arange(n)):>7.3f} {f'[{lo:.3f}, {hi:.3f}]':>16}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
