"""Image transforms: batch-wise augmentation and resizing for in-memory tensors, and the
per-image torchvision pipelines (train and evaluation) for image folders."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["Augment", "RandomCropFlip", "image_eval_transform", "image_train_transform", "resize"]

# Augmentation callables take an unnormalized NCHW batch (uint8, or float in [0, 1]) and the
# loader's generator, and return a batch of the same dtype.
Augment = Callable[[Tensor, "torch.Generator | None"], Tensor]


class RandomCropFlip:
    """Batch-wise random crop after zero padding, optionally with a random horizontal flip.

    Equivalent to torchvision's ``RandomCrop(size, padding)`` (+ ``RandomHorizontalFlip``)
    applied to each image independently, but done for the whole batch with one ``gather``.
    Zero padding happens before normalization, as torchvision's does.
    """

    def __init__(self, padding: int, flip: bool = False) -> None:
        if int(padding) < 0:
            raise ValueError(f"padding must be >= 0, got {padding}")
        self.padding = int(padding)
        self.flip = bool(flip)

    def __repr__(self) -> str:
        return f"RandomCropFlip(padding={self.padding}, flip={self.flip})"

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Augment an NCHW batch (any dtype); randomness comes only from ``generator``."""
        n, c, h, w = x.shape
        p = self.padding
        # Draw in a fixed order and always the same amount, so a given generator state maps
        # to the same augmentation whatever the options.
        oy = torch.randint(0, 2 * p + 1, (n,), generator=generator).to(x.device)
        ox = torch.randint(0, 2 * p + 1, (n,), generator=generator).to(x.device)
        flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
        if p == 0 and not self.flip:
            return x
        rows = oy[:, None] + torch.arange(h, device=x.device)  # (n, h) rows of the padded image
        cols = ox[:, None] + torch.arange(w, device=x.device)  # (n, w)
        if self.flip:
            # A flip is just reading the crop's columns right to left.
            cols = torch.where(flip[:, None], cols.flip(1), cols)
        padded = F.pad(x, (p, p, p, p)) if p else x
        wp = w + 2 * p
        flat = (rows[:, :, None] * wp + cols[:, None, :]).reshape(n, 1, h * w).expand(n, c, h * w)
        return padded.reshape(n, c, -1).gather(2, flat).reshape(n, c, h, w)


def resize(x: Tensor, size: int) -> Tensor:
    """Bilinear resize of a float NCHW batch to ``size`` x ``size`` (antialiased when shrinking)."""
    if x.shape[-2] == size and x.shape[-1] == size:
        return x
    shrink = x.shape[-2] > size or x.shape[-1] > size
    return F.interpolate(
        x, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink
    )


def image_train_transform(input_size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> Any:
    """The reference's training preprocessing of one image: random resized crop, flip, normalize."""
    from torchvision import transforms as T  # lazy: torchvision is slow to import

    return _then_normalize([T.RandomResizedCrop(input_size), T.RandomHorizontalFlip()], mean, std)


def image_eval_transform(input_size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> Any:
    """The reference's evaluation preprocessing: resize to size / 0.875, center crop, normalize."""
    from torchvision import transforms as T

    return _then_normalize([T.Resize(int(input_size / 0.875)), T.CenterCrop(input_size)], mean, std)


def _then_normalize(steps: list, mean: tuple[float, ...], std: tuple[float, ...]) -> Any:
    """``steps`` on the PIL image, then to a float tensor normalized with ``mean``/``std``."""
    from torchvision import transforms as T

    return T.Compose([*steps, T.ToTensor(), T.Normalize(mean, std)])
