"""Training and evaluation loops shared by the search, deployment and ``ponas evaluate``."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F

Forward = Callable[[torch.Tensor], torch.Tensor]


def pick_device(cuda: bool | str | None = None) -> torch.device:
    """CUDA when asked for (``True``/``"cuda"``/``None`` = auto) and available, else the CPU."""
    if cuda in (False, "cpu"):
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


@torch.no_grad()
def evaluate(
    forward: Forward,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device | str = "cpu",
    topk: tuple[int, ...] = (1, 5),
    max_batches: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, float]:
    """Top-k accuracy (fractions in [0, 1]) and mean cross-entropy of ``forward`` over batches.

    The caller puts the model in eval mode. ``topk`` values above the number of classes count
    as every example correct, as in the reference.
    """
    correct = {k: 0 for k in topk}
    loss_sum, n = 0.0, 0
    for i, (x, y) in enumerate(batches):
        if max_batches is not None and i >= max_batches:
            break
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
