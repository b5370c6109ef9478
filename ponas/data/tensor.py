"""In-memory image data sets: :class:`TensorImageDataset` (a split is a view over one shared
tensor, transformed a whole batch at once) and the holdout that turns one into
:class:`DataSplits`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from ponas.catalog import val_count
from ponas.data.splits import DataSplits, split
from ponas.data.transforms import Augment, resize

__all__ = ["TensorImageDataset", "holdout_splits"]

_KEEP: Any = object()


class TensorImageDataset(Dataset):
    """Images held in one tensor; a split is a view (an index tensor) over shared storage.

    ``images`` is N x C x H x W, either ``uint8`` (0..255) or floating point in [0, 1]; it is
    resized to ``input_size`` (bilinear) and normalized with ``mean``/``std`` per batch, so
    the stored copy stays small. ``augment`` (e.g. :class:`RandomCropFlip`) runs before
    normalization on the batch at ``input_size``: ``uint8`` when the images are stored as
    ``uint8`` at that size, else float in [0, 1]; it must keep the dtype (zero is black). Use :meth:`get_batch` for vectorized access;
    ``dataset[i]`` returns one ``(x, y)`` and exists for compatibility.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        *,
        input_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        augment: Augment | None = None,
        indices: Tensor | None = None,
        classes: Sequence[str] = (),
    ) -> None:
        if images.ndim != 4:
            raise ValueError(f"images must be N x C x H x W, got shape {tuple(images.shape)}")
        if labels.shape != (images.shape[0],):
            raise ValueError(
                f"labels must have shape ({images.shape[0]},) to match images, "
                f"got {tuple(labels.shape)}"
            )
        if len(mean) != images.shape[1] or len(std) != images.shape[1]:
            raise ValueError(
                f"mean and std need {images.shape[1]} values (one per channel), "
                f"got {len(mean)} and {len(std)}"
            )
        self.images = images
        self.labels = labels.long()
        self.input_size = int(input_size)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.augment = augment
        self.indices = None if indices is None else torch.as_tensor(indices, dtype=torch.long)
        self.classes = tuple(classes)
        mean_t = torch.tensor(self.mean, dtype=torch.float64).view(1, -1, 1, 1)
        std_t = torch.tensor(self.std, dtype=torch.float64).view(1, -1, 1, 1)
        self._scale = (1.0 / std_t).float()
        self._scale_u8 = (1.0 / (255.0 * std_t)).float()
        self._bias = (-mean_t / std_t).float()

    def __len__(self) -> int:
        return self.images.shape[0] if self.indices is None else self.indices.numel()

    def __repr__(self) -> str:
        return (
            f"TensorImageDataset(n={len(self)}, channels={self.images.shape[1]}, "
            f"input_size={self.input_size}, augment={self.augment!r})"
        )

    @property
    def targets(self) -> Tensor:
        """Labels of this view, in order (int64)."""
        return self.labels if self.indices is None else self.labels[self.indices]

    def view(
        self, indices: Tensor | Sequence[int], *, augment: Augment | None = _KEEP
    ) -> TensorImageDataset:
        """A view over ``indices`` (positions in this view), sharing storage; optionally with
        another ``augment`` (``None`` = evaluation transforms)."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        base = idx if self.indices is None else self.indices[idx]
        return TensorImageDataset(
            self.images,
            self.labels,
            input_size=self.input_size,
            mean=self.mean,
            std=self.std,
            augment=self.augment if augment is _KEEP else augment,
            indices=base,
            classes=self.classes,
        )

    def get_batch(
        self, indices: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Examples at ``indices`` (positions in this view) as ``(x float32 NCHW, y int64)``,
        transformed as one batch; augmentation draws from ``generator``."""
        rows = indices if self.indices is None else self.indices[indices]
        x = self.images[rows]  # advanced indexing copies: the stored images are never touched
        if x.shape[-2] != self.input_size or x.shape[-1] != self.input_size:
            x = resize(
                x.float().div_(255.0) if x.dtype == torch.uint8 else x.float(), self.input_size
            )
        if self.augment is not None:
            # Before conversion: cropping uint8 moves a quarter of the bytes of float32.
            x = self.augment(x, generator)
        # One fused multiply-add: (x / 255 - mean) / std for uint8, (x - mean) / std for float.
        if x.dtype == torch.uint8:
            scale, bias = self._scale_u8, self._bias
        else:
            scale, bias = self._scale, self._bias
        x = torch.addcmul(bias.to(x.device), x.float(), scale.to(x.device))
        return x, self.labels[rows]

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} is out of range for a dataset of {n} examples")
        x, y = self.get_batch(torch.tensor([i % n]))
        return x[0], y[0]

    def subset(self, positions: Tensor) -> TensorImageDataset:
        """The examples at ``positions`` with the same transforms (see :func:`subset`)."""
        return self.view(positions)


def holdout_splits(
    base: TensorImageDataset,
    test: TensorImageDataset,
    *,
    val_size: int | float,
    seed: int,
    augment: Augment,
    where: str,
) -> DataSplits:
    """``base`` split into train (with ``augment``) and a validation set held out by ``seed``
    (``val_size`` examples, or that fraction; ``where`` names the data in errors), and ``test``."""
    k = val_count(val_size, len(base), where)
    train_idx, val_idx = split(len(base), k, seed)
    return DataSplits(
        train=base.view(train_idx, augment=augment),
        val=base.view(val_idx, augment=None),
        test=test,
        num_classes=len(base.classes),
        in_channels=base.images.shape[1],
        input_size=base.input_size,
        train_eval=base.view(train_idx, augment=None),
        classes=base.classes,
    )
