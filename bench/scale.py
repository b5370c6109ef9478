"""The search's data path at scale, on a synthetic class-ordered JPEG ImageFolder.

Writes the data set once (``--data``, default ``var/scale-data``: many classes, a few JPEGs
each, listed class by class as ImageNet's are), then runs the imagenet preset's code path at a
reduced resolution and step count, and prints:

1. peak RSS of a stage-2 candidate evaluation (plan the layer, pass the prefix, fine-tune,
   score) against ``finetune_steps`` (10 and 160; goal: within 15%), each in a fresh process;
2. images/s of our loader (``Context.batches``: seeded, replayable, persistent workers) against
   torchvision's ``ImageFolder`` + ``DataLoader`` with the same transforms and workers
   (goal: at least 0.95x);
3. the class coverage of the validation subset that scores the table (goal: every class).

    python bench/scale.py [--classes 50] [--per-class 20] [--size 64] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ponas.search import make_context  # noqa: E402


def write_data(root: Path, classes: int, per_class: int, size: int) -> Path:
    """``classes`` x ``per_class`` random JPEGs in train/ (and 2 per class in val/), once."""
    from PIL import Image

    marker = root / f".done-{classes}x{per_class}x{size}"
    if marker.exists():
        return root
    rng = np.random.default_rng(0)
    for split, n in (("train", per_class), ("val", 2)):
        for c in range(classes):
            folder = root / split / f"n{c:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                # smooth noise compresses like a photo rather than like static
                small = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
                img = Image.fromarray(small).resize((size + 16, size + 16), Image.BILINEAR)
                img.save(folder / f"{c}_{i}.JPEG", quality=90)
    marker.touch()
    return root


def settings(args: argparse.Namespace, **kw) -> dict:
    return {
        "dataset_dir": str(args.data),
        "input_size": args.size,
        "batch_size": args.batch,
        "val_size": args.val,
        "eval_batches": args.eval_batches,
        "suffix_samples": 2,
        "bn_batches": 2,
        "num_workers": args.workers,
        "feature_cache_mb": args.cache_mb,
        "device": "cpu",
        **kw,
    }


def child(args: argparse.Namespace) -> None:
    """One candidate evaluation of layer ``--layer`` with ``--steps`` fine-tune steps; prints
    its peak RSS (this process and its loader workers) as JSON."""
    from ponas.search.stage2 import PrefixFeatures, finetune_and_score, plan_layer
    from ponas.supernet import Supernet

    if args.device == "cpu":
        torch.set_num_threads(1)
    overrides = settings(args, finetune_steps=args.steps, device=args.device)
    ctx = make_context("imagenet", overrides)
    supernet = ctx.prepare(Supernet(ctx.space))
    t0 = time.perf_counter()
    plan = plan_layer(ctx, supernet, args.layer, ctx.space.allowed_candidates(0)[:1] * args.layer)
    features = PrefixFeatures(ctx, supernet, plan, cache_mb=ctx.cfg.feature_cache_mb)
    scores = {}
    for cand in ctx.space.allowed_candidates(args.layer)[: args.candidates]:
        scores[cand] = finetune_and_score(ctx, supernet, plan, cand, features).accuracy
    result = {
        "steps": args.steps,
        "candidates": len(scores),
        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "workers_peak_rss": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
        "s": time.perf_counter() - t0,
    }
    if ctx.cuda:
        result["peak_device"] = torch.cuda.max_memory_allocated()
    print(json.dumps(result))


def peak_rss(args: argparse.Namespace, steps: int) -> dict:
    cmd = [sys.executable, __file__, "--child", "--steps", str(steps), "--workers", "0"]
    for key in ("data", "size", "batch", "val", "eval_batches", "cache_mb", "layer"):
        cmd += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT).stdout
    return json.loads(out.strip().splitlines()[-1])


def loader_speed(args: argparse.Namespace) -> tuple[float, float]:
    """Images/s over ``--epochs`` epochs after one warm-up epoch: ours, torchvision's."""
    from torch.utils.data import DataLoader
    from torchvision.datasets import ImageFolder

    ctx = make_context("imagenet", settings(args))
    train = ctx.data.train

    def ours(epoch: int) -> int:
        return sum(len(y) for _, y in ctx.batches("train", epoch))

    folder = ImageFolder(str(args.data / "train"), transform=train.transform)
    reference = DataLoader(
        torch.utils.data.Subset(folder, train.indices),
        batch_size=args.batch,
        shuffle=True,
        drop_last=True,
        num_workers=args.workers,
        persistent_workers=args.workers > 0,
    )

    def theirs(epoch: int) -> int:
        return sum(len(y) for _, y in reference)

    rates: dict[str, list[float]] = {"ours": [], "theirs": []}
    for epoch in range(args.epochs + 1):  # alternate, so machine noise hits both alike
        for name, run in (("ours", ours), ("theirs", theirs)):
            t0 = time.perf_counter()
            n = run(epoch)
            if epoch:  # the first epoch starts the workers
                rates[name].append(n / (time.perf_counter() - t0))
    return max(rates["ours"]), max(rates["theirs"])


def coverage(args: argparse.Namespace) -> dict:
    ctx = make_context("imagenet", settings(args))
    val, info = ctx.validation
    return {
        **info,
        "covered": int(val.targets.unique().numel()),
        "in_split": int(ctx.data.val.targets.unique().numel()),
        "classes": ctx.data.num_classes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT / "var" / "scale-data")
    parser.add_argument("--classes", type=int, default=50)
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--size", type=int, default=64, help="input resolution")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--val", type=int, default=300, help="validation images held out")
    parser.add_argument("--eval-batches", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2, help="timed loader epochs")
    parser.add_argument("--cache-mb", type=float, default=16, help="feature_cache_mb")
    parser.add_argument("--layer", type=int, default=0, help="the stage-2 layer evaluated")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--candidates", type=int, default=2, help="candidates evaluated")
    parser.add_argument("--device", default="cpu", help="for --child: cpu or cuda")
    parser.add_argument(
        "--child",
        action="store_true",
        help="only evaluate --candidates of --layer with --steps (prints JSON)",
    )
    parser.add_argument("--write-only", action="store_true", help="only write the data set")
    parser.add_argument(
        "--parts", default="rss,loader,coverage", help="which figures to print (comma-separated)"
    )
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    write_data(args.data, args.classes, args.per_class, args.size)
    if args.write_only:
        return
    print(
        f"data: {args.classes} classes x {args.per_class} JPEGs, input {args.size}px, "
        f"batch {args.batch}, feature_cache_mb {args.cache_mb:g}"
    )
    parts = set(args.parts.split(","))
    if "rss" in parts:
        print_rss(args)
    if "loader" in parts:
        print_loader(args)
    if "coverage" in parts:
        print_coverage(args)


def print_rss(args: argparse.Namespace) -> None:
    runs = [peak_rss(args, steps) for steps in (10, 160)]
    for r in runs:
        print(
            f"stage-2 candidate evaluation, layer {args.layer}, {r['steps']:>3} fine-tune steps: "
            f"peak RSS {r['peak_rss'] / 2**20:,.0f} MiB ({r['s']:.1f} s)"
        )
    growth = runs[1]["peak_rss"] / runs[0]["peak_rss"] - 1
    print(f"peak RSS 160 vs 10 steps: {growth:+.1%} (goal: within 15%)")


def print_loader(args: argparse.Namespace) -> None:
    ours, theirs = loader_speed(args)
    print(
        f"loader, {args.workers} workers: ours {ours:,.0f} images/s, torchvision ImageFolder + "
        f"DataLoader {theirs:,.0f} images/s: {ours / theirs:.2f}x (goal: at least 0.95x)"
    )


def print_coverage(args: argparse.Namespace) -> None:
    cov = coverage(args)
    print(
        f"validation subset: {cov['images']} of {cov['of']} held-out images, "
        f"{cov['covered']} classes covered of {cov['in_split']} in the validation split "
        f"({cov['classes']} in all; {cov['drawn']})"
    )


if __name__ == "__main__":
    main()
