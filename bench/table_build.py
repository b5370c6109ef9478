"""Stage-2 time per layer with feature reuse vs without, measured in one run.

The prefix (layers before ``l``) is frozen while layer ``l``'s candidates are fine-tuned, so
its features are computed once per batch and shared by every candidate; once a candidate is
fine-tuned it is frozen too, so its outputs are computed once and shared by every evaluation
suffix. Without reuse every path runs whole. This times :func:`ponas.search.search_layer`
both ways on the same supernet and the same draws (the rows must come out identical) and
prints the speed-up: digits, and the imagenet space at low resolution on its middle layers
(goal: at least 1.5x there). The fine-tune (forward and backward through candidate, suffix
and head, which reuse cannot remove) bounds it: ``bound`` is the fine-tune's speed-up from the
cost model, taking a backward pass as two forward passes.

    python bench/table_build.py [--quick]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from PIL import Image

from ponas.search import make_context, search_layer
from ponas.supernet import Supernet


def imagefolder(root, size: int = 40, per_class: int = 16) -> str:
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for label in range(4):
            folder = root / split / f"c{label}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                pixels = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return str(root)


def time_layer(ctx, supernet, layer, prefix, reuse: bool) -> tuple[float, list]:
    ctx.cfg.reuse_prefix_features = reuse
    state = {k: v.clone() for k, v in supernet.state_dict().items()}
    start = time.perf_counter()
    row, *_ = search_layer(ctx, supernet, layer, prefix)
    elapsed = time.perf_counter() - start
    supernet.load_state_dict(state)  # the other way starts from the same weights
    return elapsed, row


def bench(name, ctx, layers, repeats: int) -> None:
    torch.manual_seed(0)
    supernet = ctx.prepare(Supernet(ctx.space))
    for layer in layers:
        prefix = [ctx.space.allowed_candidates(i)[0] for i in range(layer)]
        time_layer(ctx, supernet, layer, prefix, False)  # warm-up: allocator, conv kernels
        with_reuse, without = [], []
        for _ in range(repeats):  # alternate so machine noise hits both alike
            t, row_a = time_layer(ctx, supernet, layer, prefix, True)
            with_reuse.append(t)
            t, row_b = time_layer(ctx, supernet, layer, prefix, False)
            without.append(t)
            assert row_a == row_b, "reuse changed the table row"
        a, b = min(with_reuse), min(without)
        print(
            f"{name:<20} layer {layer:>2}: reuse {a:7.2f} s  recompute {b:7.2f} s  "
            f"speed-up {b / a:5.2f}x  (bound {finetune_bound(ctx.space, layer):4.2f}x)"
        )


def finetune_bound(space, layer: int) -> float:
    """The fine-tune's speed-up from reuse, from the cost model: (prefix forward + 3 x rest)
    / (3 x rest), with the bench's prefix (first candidates) and the mean candidate after it."""
    from ponas.cost import base_cost, candidate_cost

    def mean_macs(i: int) -> float:
        names = space.allowed_candidates(i)
        return sum(candidate_cost(space, i, c).macs for c in names) / len(names)

    last = space.layers[-1]
    head = space.head_channels * (last.out_channels * last.out_size**2 + space.num_classes)
    stem = base_cost(space).macs - head  # stem conv and the fixed first block
    prefix = stem + sum(
        candidate_cost(space, i, space.allowed_candidates(i)[0]).macs for i in range(layer)
    )
    rest = sum(mean_macs(i) for i in range(layer, space.num_layers)) + head
    return (prefix + 3 * rest) / (3 * rest)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    import tempfile
    from pathlib import Path

    repeats = 1 if args.quick else 2
    steps = 4 if args.quick else 10
    with tempfile.TemporaryDirectory() as tmp:
        digits = make_context(
            "digits",
            {"finetune_steps": steps * 2, "suffix_samples": 2, "bn_batches": 2, "eval_batches": 2},
            tmp,
        )
        bench("digits", digits, [2, 4] if args.quick else [1, 2, 3, 4], repeats)
        root = imagefolder(Path(tmp) / "img")
        imagenet = make_context(
            "imagenet",
            {
                "dataset_dir": root,
                "input_size": 64,
                "batch_size": 16,
                "finetune_steps": steps,
                "suffix_samples": 2,
                "bn_batches": 2,
                "eval_batches": 2,
                "val_size": 16,
                "num_workers": 0,
            },
            tmp,
        )
        middle = [9] if args.quick else [6, 9, 12]
        bench("imagenet at 64x64", imagenet, middle, repeats)
    print("goal: speed-up >= 1.5x on the imagenet space's middle layers")
    print(
        "bound: the speed-up of the fine-tune alone, from the cost model (its forward and "
        "backward through candidate, suffix and head remain); evaluation can exceed it"
    )


if __name__ == "__main__":
    main()
