"""``digits``: scikit-learn's bundled 8x8 handwritten digits, upscaled once, in memory.

The test split is held out by a fixed seed (:data:`~ponas.catalog.DIGITS_TEST_SEED`), so it
never moves with the search seed; only the validation split does.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ponas.catalog import DIGITS_TEST_FRACTION, DIGITS_TEST_SEED
from ponas.data.splits import DataSplits, split
from ponas.data.tensor import TensorImageDataset, holdout_splits
from ponas.data.transforms import InputSpec, RandomCropFlip

__all__ = ["DIGITS_CLASSES", "load_digits"]

DIGITS_CLASSES = tuple(str(d) for d in range(10))


def load_digits(spec: InputSpec, val_size: int | float, seed: int) -> DataSplits:
    """The ``digits`` splits (validation held out by ``seed``); what
    :func:`~ponas.data.registry.load_dataset` returns for it."""
    from sklearn.datasets import load_digits as bundled  # lazy: scikit-learn is slow to import

    input_size = spec.input_size
    bunch = bundled()
    # Values are 0..16; upscale once here (bilinear, align_corners=False) since the whole set
    # is small; resizing in TensorImageDataset is then a no-op per batch.
    images = torch.from_numpy(np.asarray(bunch.images, dtype=np.float32) / 16.0).unsqueeze(1)
    if input_size != images.shape[-1]:
        images = F.interpolate(
            images, size=(input_size, input_size), mode="bilinear", align_corners=False
        )
    labels = torch.from_numpy(np.asarray(bunch.target, dtype=np.int64))
    n = labels.numel()
    trainval, test_idx = split(n, round(DIGITS_TEST_FRACTION * n), DIGITS_TEST_SEED)
    base = TensorImageDataset(images, labels, **spec.normalization(), classes=DIGITS_CLASSES)
    # 1-2 pixel shifts: about a quarter of an original 8x8 pixel at 16x16.
    augment = RandomCropFlip(padding=1 if input_size < 16 else 2, flip=False)
    return holdout_splits(
        base.view(trainval),
        base.view(test_idx, augment=None),
        val_size=val_size,
        seed=seed,
        augment=augment,
        where="digits",
    )
