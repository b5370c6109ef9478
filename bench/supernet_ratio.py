"""How well is the supernet trained? A path's one-shot accuracy against the same network alone.

Per stage-1 setting, train the ``shapes`` supernet (``ponas.search.run_stage1``: stage 1
only, one seed) and measure every network of the committed ground truth
(``bench/data/shapes-truth/shapes-truth-v1.json``: networks trained alone from scratch, 10
epochs, several initializations) with its weights inherited from that supernet, BatchNorm
recalibrated, on the test split (``bench/table_fidelity.py``'s ``inherited`` predictor, the
same code). Printed per setting: the mean over the pool of one-shot / alone (alone = the
network's mean accuracy over the truth's seeds), its range, Kendall's tau(one-shot, alone)
and the stage-1 seconds (the cost, with the default's as 1.00).

The truth holds few networks that agree with each other only at tau ~0.2 between seeds, so
the tau here cannot judge a ranking: the ratio is the figure that carries weight.

    OMP_NUM_THREADS=1 python bench/supernet_ratio.py                  # 4 settings, ~10-20 min
    OMP_NUM_THREADS=1 python bench/supernet_ratio.py --settings default fair
    python bench/supernet_ratio.py --quick                            # ~30 s: make bench

Settings: ``default`` (the preset: 10 epochs, uniform sampling), ``long`` (30 epochs),
``fair`` (``sampling: fair``), ``noalign`` (the supernet initialized without
``ponas.supernet.align_candidates``: a bench-only variant, there is no setting for it).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from table_fidelity import one_shot, tau  # noqa: E402  (one definition: the fidelity bench's)

from ponas import supernet as supernet_module  # noqa: E402
from ponas.audit import load_truth_file  # noqa: E402
from ponas.search import load_checkpoint, make_context, run_stage1  # noqa: E402
from ponas.space import SearchSpace  # noqa: E402
from ponas.supernet import Supernet  # noqa: E402

TRUTH = Path(__file__).resolve().parent / "data" / "shapes-truth" / "shapes-truth-v1.json"
SETTINGS = {
    "default": ({}, True),
    "long": ({"epochs": 30}, True),
    "fair": ({"sampling": "fair"}, True),
    "noalign": ({}, False),
}


@contextlib.contextmanager
def aligned(on: bool):
    """Supernets built inside start with aligned candidates (the product's way) or not."""
    saved = supernet_module.align_candidates
    if not on:
        supernet_module.align_candidates = lambda *a, **k: None
    try:
        yield
    finally:
        supernet_module.align_candidates = saved


def measure(name: str, overrides: dict, align: bool, pool, alone, data, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp, aligned(align):
        t0 = time.perf_counter()
        ckpt_path = run_stage1("shapes", {**overrides, "seed": seed}, tmp)
        seconds = time.perf_counter() - t0
        ckpt = load_checkpoint(ckpt_path)
    supernet = Supernet(SearchSpace.from_dict(ckpt["space"]))
    supernet.load_state_dict(ckpt["model"])
    shot = [one_shot(supernet, choices, data, "test", seed) for choices in pool]
    ratios = [s / a for s, a in zip(shot, alone, strict=True)]
    return {
        "setting": name,
        "seconds": seconds,
        "train_acc": ckpt["metrics"].get("train_acc", float("nan")),
        "one_shot": shot,
        "ratio": statistics.mean(ratios),
        "ratio_lo": min(ratios),
        "ratio_hi": max(ratios),
        "tau": tau(shot, alone),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), help="default: all")
    parser.add_argument("--seed", type=int, default=0, help="stage-1 seed")
    parser.add_argument("--truth", default=str(TRUTH))
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="default and fair only, 1 stage-1 epoch at batch 256, 3 networks",
    )
    args = parser.parse_args()
    args.settings = args.settings or (["default", "fair"] if args.quick else list(SETTINGS))
    torch.set_num_threads(args.threads)
    truth = load_truth_file(args.truth, min_seeds=1)
    pool, alone = [], []
    for b in truth["budgets"]:
        pool += b["pool"]
        alone += b["mean"]
    extra: dict = {}
    if args.quick:
        pool, alone = pool[:3], alone[:3]
        extra = {"epochs": 1, "batch_size": 256}
    data = make_context("shapes", {"seed": 0}).data  # the truth's split; test split scored
    print(
        f"supernet one-shot vs alone on shapes: {len(pool)} networks of {Path(args.truth).name} "
        f"(alone: mean of {len(truth['seeds'])} seeds, {truth['recipe']['epochs']} epochs, "
        f"{100 * min(alone):.1f}-{100 * max(alone):.1f}%), stage-1 seed {args.seed}"
        + (", QUICK (1 epoch, batch 256)" if args.quick else "")
    )
    print(
        f"{'setting':>9} {'one-shot':>13} {'ratio mean':>10} {'range':>13} {'tau':>6} "
        f"{'train acc':>9} {'stage-1 s':>9} {'cost':>5}"
    )
    base = None
    for name in args.settings:
        overrides, align = SETTINGS[name]
        r = measure(name, {**overrides, **extra}, align, pool, alone, data, args.seed)
        base = base or r["seconds"]
        shot = f"{100 * min(r['one_shot']):.1f}-{100 * max(r['one_shot']):.1f}%"
        spread = f"{r['ratio_lo']:.3f}-{r['ratio_hi']:.3f}"
        print(
            f"{name:>9} {shot:>13} {r['ratio']:>10.3f} "
            f"{spread:>13} {r['tau']:>6.2f} "
            f"{100 * r['train_acc']:>8.1f}% {r['seconds']:>9.0f} {r['seconds'] / base:>5.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
