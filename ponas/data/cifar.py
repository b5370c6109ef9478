"""``cifar10``: CIFAR-10 from its python pickle batches, read safely, held in memory as uint8."""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ponas.data.errors import DatasetError, one_line
from ponas.data.splits import DataSplits
from ponas.data.tensor import TensorImageDataset, holdout_splits
from ponas.data.transforms import InputSpec, RandomCropFlip

__all__ = ["CIFAR10_CLASSES", "load_cifar10"]

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
_CIFAR_EXPECTED = "expected data_batch_1..5 and test_batch (python pickle batches)"
_CIFAR_SUBDIR = "cifar-10-batches-py"
_CIFAR_BATCH_RE = re.compile(r"^data_batch_(\d+)$")

# The only globals a CIFAR-10 batch (a dict of a numpy array and lists) needs. Anything else in
# a pickle could run code on load, and dataset folders may come from users.
_PICKLE_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _PICKLE_ALLOWED:
            raise pickle.UnpicklingError(
                f"it references {module}.{name}, which a CIFAR-10 batch never contains"
            )
        return super().find_class(module, name)


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(data N x 3072 uint8, labels N int64)`` of one pickle batch."""
    what = "expected a python pickle dict with b'data' (N x 3072 uint8) and b'labels'"
    try:
        with open(path, "rb") as f:
            batch = _BatchUnpickler(f, encoding="bytes").load()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read the CIFAR-10 batch ({one_line(exc)})") from None
    except Exception as exc:  # any unpickling failure at all means "not a batch"
        raise DatasetError(f"{path}: not a CIFAR-10 batch ({one_line(exc)}); {what}") from None
    if not isinstance(batch, dict):
        raise DatasetError(f"{path}: not a CIFAR-10 batch (a {type(batch).__name__}); {what}")
    # Real batches were pickled by Python 2 and load with bytes keys; accept str keys too.
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if data is None or labels is None:
        keys = sorted(repr(k) for k in batch)
        raise DatasetError(f"{path}: not a CIFAR-10 batch (keys {', '.join(keys)}); {what}")
    try:
        data = np.asarray(data)
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"{path}: malformed CIFAR-10 batch ({one_line(exc)}); {what}") from None
    if data.ndim != 2 or data.shape[1] != 3072 or data.dtype != np.uint8:
        raise DatasetError(f"{path}: b'data' is {data.dtype} with shape {data.shape}; {what}")
    if labels.shape != (data.shape[0],):
        raise DatasetError(
            f"{path}: {labels.size} labels for {data.shape[0]} images; {what} (one label each)"
        )
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DatasetError(
            f"{path}: labels range {labels.min()}..{labels.max()}; expected 0..9 (CIFAR-10)"
        )
    return data, labels


def _cifar_folder(root: Path) -> tuple[Path, list[Path]]:
    """The folder holding the batches (root itself or root/cifar-10-batches-py) and its
    data batches in numeric order."""
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder; {_CIFAR_EXPECTED}")
    for folder in (root, root / _CIFAR_SUBDIR):
        if not folder.is_dir() or not (folder / "test_batch").is_file():
            continue
        batches = [
            (int(m[1]), p)
            for p in folder.iterdir()
            if (m := _CIFAR_BATCH_RE.match(p.name)) and p.is_file()
        ]
        if batches:
            return folder, [p for _, p in sorted(batches)]
    raise DatasetError(
        f"{root}: not a CIFAR-10 folder: {_CIFAR_EXPECTED} here or in {_CIFAR_SUBDIR}/"
    )


def load_cifar10(root: Path, spec: InputSpec, val_size: int | float, seed: int) -> DataSplits:
    """The CIFAR-10 splits of the batches in ``root`` (or ``root/cifar-10-batches-py``),
    validation held out of the training batches by ``seed``."""
    folder, batch_paths = _cifar_folder(root)
    parts = [_read_cifar_batch(p) for p in batch_paths]
    train_data = np.concatenate([d for d, _ in parts])
    train_labels = np.concatenate([y for _, y in parts])
    test_data, test_labels = _read_cifar_batch(folder / "test_batch")
    # Rows are the R, G and B planes one after another, each 32x32 row-major: plain NCHW.
    # Kept as uint8 at 32x32 (150 MB for the full set); resizing happens per batch.
    train_x = torch.from_numpy(train_data).reshape(-1, 3, 32, 32)
    test_x = torch.from_numpy(test_data).reshape(-1, 3, 32, 32)
    common = dict(**spec.normalization(), classes=CIFAR10_CLASSES)
    # RandomCrop(32, padding=4) + flip, the padding scaled with the image when resized.
    augment = RandomCropFlip(padding=max(1, round(4 * spec.input_size / 32)), flip=True)
    return holdout_splits(
        TensorImageDataset(train_x, torch.from_numpy(train_labels), **common),
        TensorImageDataset(test_x, torch.from_numpy(test_labels), **common),
        val_size=val_size,
        seed=seed,
        augment=augment,
        where=str(folder),
    )
