"""Training and evaluation pieces shared by the search, deployment and ``ponas evaluate``:
one training step, one optimizer, one learning-rate schedule, one seed rule, BN recalibration.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

Forward = Callable[[torch.Tensor], torch.Tensor]


class OptimizerSettings(Protocol):
    """What :func:`make_optimizer` reads (a SearchConfig has it)."""

    momentum: float
    weight_decay: float
    nesterov: bool


def pick_device(cuda: bool | str | None = None) -> torch.device:
    """CUDA when asked for (``True``/``"cuda"``/``None`` = auto) and available, else the CPU."""
    if cuda in (False, "cpu"):
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


# ---- seeds ----------------------------------------------------------------------------------


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed named by ``parts`` (e.g. ``(seed, "stage1", epoch)``): FNV-1a over their
    ``repr``, so independent of Python's hash randomization. Every random stream of a search
    is seeded from its name rather than from history, which is what makes a resumed or
    fanned-out search replay the same draws."""
    h = 1469598103934665603
    for part in parts:
        for ch in repr(part).encode():
            h = ((h ^ ch) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h & 0x7FFFFFFFFFFFFFFF


def epoch_seed(seed: int, epoch: int) -> int:
    """A 64-bit seed for epoch ``epoch`` of a loader seeded ``seed`` (a :func:`derive_seed`
    value). SeedSequence mixes the two so that neighbouring epochs give unrelated streams.
    (Kept apart from :func:`derive_seed` because every batch order of every saved table
    depends on it.)"""
    state = np.random.SeedSequence([int(seed) % 2**64, int(epoch)]).generate_state(1, np.uint64)
    return int(state[0])


# ---- one step, its optimizer and schedule ---------------------------------------------------


def autocast(enabled: bool):
    """bfloat16 autocast on CUDA when ``enabled`` (AMP); a no-op context otherwise."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=enabled)


def make_optimizer(params: Iterable[nn.Parameter], cfg: OptimizerSettings, lr: float):
    """SGD with momentum; no weight decay on biases and BatchNorm (parameters of dim <= 1)."""
    decay, no_decay = [], []
    for p in params:
        (no_decay if p.dim() <= 1 else decay).append(p)
    return torch.optim.SGD(
        [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov and cfg.momentum > 0,
    )


def lr_at(base_lr: float, step: int, total: int, warmup: int = 0) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to zero at ``total``."""
    if step < warmup:
        return base_lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * base_lr * (1 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def train_step(
    model: Callable[..., torch.Tensor],
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    *args: Any,
    label_smoothing: float = 0.0,
    amp: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One SGD step on a batch already on the device: (loss, logits). Stage 1, stage 2's
    fine-tunes and deployment's fine-tune take it. ``args`` follow the batch into the model
    (e.g. the sampled path); ``amp``: bfloat16 autocast (CUDA only)."""
    with autocast(amp):
        logits = model(x, *args)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss, logits


# ---- evaluation -----------------------------------------------------------------------------


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches, forward=None) -> None:
    """Re-estimate BatchNorm running statistics from a few training batches.

    A supernet path evaluated with the running statistics of the whole supernet is near
    chance, so every evaluation of a path (or a freshly inherited network) first resets the
    statistics and averages them over ``batches`` (cumulative average, momentum=None).
    ``forward(x)`` defaults to ``model(x)``; pass e.g. ``lambda x: supernet(x, choices)``.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    was_training = model.training
    model.train()
    forward = forward or model
    for x, _ in batches:
        forward(x)
    for m, momentum in zip(bns, saved, strict=True):
        m.momentum = momentum
    model.train(was_training)


@torch.no_grad()
def evaluate(
    forward: Forward,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device | str = "cpu",
    topk: tuple[int, ...] = (1, 5),
    progress: Callable[[int], None] | None = None,
) -> dict[str, float]:
    """Top-k accuracy (fractions in [0, 1]) and mean cross-entropy of ``forward`` over batches.

    The caller puts the model in eval mode. ``topk`` values above the number of classes count
    as every example correct, as in the reference.
    """
    correct = {k: 0 for k in topk}
    loss_sum, n = 0.0, 0
    for x, y in batches:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        logits = forward(x).float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        ranked = logits.topk(min(max(topk), logits.shape[1]), dim=1).indices
        hits = ranked.eq(y[:, None])
        for k in topk:
            correct[k] += hits[:, :k].any(dim=1).sum().item()
        n += y.numel()
        if progress:
            progress(y.numel())
    if n == 0:
        raise ValueError("no examples to evaluate: the data split is empty")
    out = {f"top{k}": correct[k] / n for k in topk}
    out["loss"] = loss_sum / n
    out["examples"] = n
    return out
