"""Stage-1 training images/s: the supernet against torchvision's MobileNetV2, same device, one run.

The supernet takes meta-training's own step (:func:`ponas.train.train_step`: a uniformly
sampled path per step, the imagenet preset's SGD, label smoothing, bf16 autocast and
channels_last on CUDA); MobileNetV2 (torchvision, 1000 classes) takes the same step on the
same batches. Rounds alternate between the two so machine noise hits both alike; the best
round of each is kept. Prints images/s for each, the ratio supernet / MobileNetV2, and the
mean MACs of the sampled paths beside MobileNetV2's, since a sampled path does a different
amount of work than MobileNetV2.

    python bench/stage1_throughput.py [--quick] [--size N] [--batch N] [--steps N]

Defaults: on a CUDA machine the imagenet preset at 224x224, batch 128; on the CPU 64x64,
batch 32 (the same space at low resolution: the absolute figures are not ImageNet's).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch
from torch import nn

from ponas.cost import network_cost
from ponas.search import Context, resolve
from ponas.supernet import Supernet
from ponas.train import make_optimizer, train_step


def count_macs(model: nn.Module, image: torch.Tensor) -> int:
    """Multiply-accumulates of one ``image`` through ``model`` (convolutions, linear layers)."""
    total = 0

    def count(module: nn.Module, inputs, output) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            per_output = module.in_channels // module.groups * module.kernel_size[0]
            total += output[0].numel() * per_output * module.kernel_size[1]
        elif isinstance(module, nn.Linear):
            total += module.in_features * module.out_features

    hooks = [m.register_forward_hook(count) for m in model.modules()]
    try:
        with torch.no_grad():
            model.eval()(image)
    finally:
        for h in hooks:
            h.remove()
    return total


def timed_round(ctx: Context, model, optimizer, batches, paths) -> float:
    """Seconds for one round of steps (``paths`` None: the model takes no path)."""
    model.train()
    if ctx.cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for x, y in batches:
        extra = (paths(),) if paths else ()
        train_step(
            model, optimizer, x, y, *extra, label_smoothing=ctx.cfg.label_smoothing, amp=ctx.amp
        )
    if ctx.cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, smaller rounds")
    parser.add_argument("--size", type=int, help="input resolution (224 on CUDA, 64 on CPU)")
    parser.add_argument("--batch", type=int, help="batch size (128 on CUDA, 32 on CPU)")
    parser.add_argument("--steps", type=int, help="steps per round")
    parser.add_argument("--rounds", type=int, help="rounds per model, after one warm-up round")
    args = parser.parse_args()
    from torchvision.models import mobilenet_v2

    cuda = torch.cuda.is_available()
    size = args.size or (224 if cuda else 64)
    batch = args.batch or (128 if cuda else (8 if args.quick else 32))
    steps = args.steps or (20 if cuda else (2 if args.quick else 5))
    rounds = args.rounds or (1 if args.quick else 3)
    space, cfg = resolve("imagenet", {"input_size": size, "batch_size": batch})
    device = torch.device("cuda" if cuda else "cpu")
    ctx = Context(space, cfg, None, device, out=None)  # no data, no output: steps only
    torch.manual_seed(0)

    supernet = ctx.prepare(Supernet(space))
    reference = ctx.prepare(mobilenet_v2(num_classes=space.num_classes))
    sampler = random.Random(0)
    sampled: list[list[str]] = []

    def path() -> list[str]:
        sampled.append(supernet.sample(sampler))
        return sampled[-1]

    models = {
        "supernet (stage 1)": (supernet, make_optimizer(supernet.parameters(), cfg, cfg.lr), path),
        "MobileNetV2": (reference, make_optimizer(reference.parameters(), cfg, cfg.lr), None),
    }
    batches = [
        (
            ctx.to_device(torch.randn(batch, 3, size, size)),
            torch.randint(0, space.num_classes, (batch,), device=device),
        )
        for _ in range(steps)
    ]
    print(
        f"device {torch.cuda.get_device_name() if cuda else 'cpu'}, {size}x{size}, batch {batch}, "
        f"{steps} steps x {rounds} rounds (+1 warm-up), amp={cfg.amp and cuda}, "
        f"channels_last={cfg.channels_last}"
    )
    times: dict[str, list[float]] = {name: [] for name in models}
    for r in range(rounds + 1):
        for name, (model, optimizer, paths) in models.items():
            t = timed_round(ctx, model, optimizer, batches, paths)
            if r:  # round 0 warms up kernels, allocator and autotuning
                times[name].append(t)
    rate = {name: batch * steps / min(ts) for name, ts in times.items()}
    for name, ts in times.items():
        print(
            f"{name:<20} {rate[name]:9.1f} images/s  "
            f"(rounds: {', '.join(f'{batch * steps / t:.1f}' for t in ts)})"
        )
    path_macs = statistics.mean(network_cost(space, p).macs for p in sampled)
    ref_macs = count_macs(reference, ctx.to_device(torch.randn(1, 3, size, size)))
    ratio = rate["supernet (stage 1)"] / rate["MobileNetV2"]
    print(
        f"ratio supernet / MobileNetV2: {ratio:.2f}x images/s; mean sampled path "
        f"{path_macs / 1e6:.0f}M MACs vs MobileNetV2 {ref_macs / 1e6:.0f}M per image at "
        f"{size}x{size}, so {ratio * path_macs / ref_macs:.2f}x in MACs/s"
    )


if __name__ == "__main__":
    main()
