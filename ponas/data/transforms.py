"""Image transforms: batch-wise augmentation and resizing for in-memory tensors, and the
per-image torchvision pipelines (train and evaluation) for image folders."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "Augment",
    "InputSpec",
    "RandomCropFlip",
    "image_eval_transform",
    "image_train_transform",
    "resize",
]


@dataclass(frozen=True)
class InputSpec:
    """What the network is fed: images ``input_size`` x ``input_size``, normalized per channel
    with ``mean`` and ``std`` (checked by :func:`~ponas.data.registry.load_dataset`)."""

    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def normalization(self) -> dict[str, Any]:
        """``input_size``, ``mean`` and ``std`` as :class:`TensorImageDataset` takes them."""
        return {"input_size": self.input_size, "mean": self.mean, "std": self.std}


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


def image_train_transform(spec: InputSpec) -> Any:
    """The reference's training preprocessing of one image: random resized crop, flip, normalize."""
    from torchvision import transforms as T  # lazy: torchvision is slow to import

    return _then_normalize([T.RandomResizedCrop(spec.input_size), T.RandomHorizontalFlip()], spec)


def image_eval_transform(spec: InputSpec) -> Any:
    """The reference's evaluation preprocessing: resize to size / 0.875, center crop, normalize."""
    from torchvision import transforms as T

    size = spec.input_size
    return _then_normalize([T.Resize(int(size / 0.875)), T.CenterCrop(size)], spec)


def _then_normalize(steps: list, spec: InputSpec) -> Any:
    """``steps`` on the PIL image, then to a float tensor normalized with the spec's mean/std."""
    from torchvision import transforms as T

    return T.Compose([*steps, T.ToTensor(), T.Normalize(spec.mean, spec.std)])
