"""Loading a data set by name: the one place that knows which module loads which data set.

:func:`load_dataset` checks the arguments every data set shares (input size, normalization,
seed) and hands them to ``digits``, ``shapes`` (in memory, no folder), ``cifar10`` or
``imagefolder`` (a folder); :func:`load_test_split` loads only what evaluation reads.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from pathlib import Path

from torch.utils.data import Dataset

from ponas.catalog import BUILTIN_DATASETS, DATASET_CHANNELS, DATASETS, DatasetError
from ponas.data.cifar import load_cifar10
from ponas.data.digits import load_digits
from ponas.data.folder import load_imagefolder, load_imagefolder_test
from ponas.data.shapes import load_shapes
from ponas.data.splits import DataSplits
from ponas.data.transforms import InputSpec

__all__ = ["load_dataset", "load_test_split"]

# The data sets generated or bundled in memory (no folder), and those read from ``root``, with
# what that folder must hold.
_IN_MEMORY: dict[str, Callable[..., DataSplits]] = {"digits": load_digits, "shapes": load_shapes}
_FROM_FOLDER: dict[str, tuple[Callable[..., DataSplits], str]] = {
    "cifar10": (
        load_cifar10,
        "the folder of CIFAR-10 python pickle batches (data_batch_1..5, test_batch)",
    ),
    "imagefolder": (
        load_imagefolder,
        "a folder with train/ and val/ or test/ (ImageNet-style class subfolders)",
    ),
}


def load_dataset(
    name: str,
    root: str | Path | None = None,
    *,
    input_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    val_size: int | float,
    seed: int = 0,
) -> DataSplits:
    """Load dataset ``name`` (one of :data:`DATASETS`) as train/val/test splits.

    ``root``: ignored for digits and shapes; the folder of CIFAR-10 pickle batches (or one holding
    ``cifar-10-batches-py/``); the folder holding ``train/`` and ``val/`` or ``test/``.
    ``val_size``: an int is a number of validation examples, a float in (0, 1) a fraction of
    the training data. The validation split is a permutation seeded by ``seed`` and held out of
    the training data. Raises :class:`DatasetError` for anything missing or malformed.
    """
    key = str(name).strip().lower()
    if key not in DATASETS:
        raise DatasetError(
            f"unknown dataset {name!r}: expected one of {', '.join(repr(d) for d in DATASETS)}"
        )
    where = key if root is None or key in BUILTIN_DATASETS else str(root)
    input_size = _check_input_size(input_size, where)
    channels = DATASET_CHANNELS.get(key)
    m, s = _check_normalization(mean, std, channels, where)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise DatasetError(f"{where}: seed must be an int, got {seed!r}")
    if key in _IN_MEMORY:
        return _IN_MEMORY[key](InputSpec(input_size, m, s), val_size, int(seed))
    load, what = _FROM_FOLDER[key]
    if root is None:
        raise DatasetError(f"{key}: no root given; expected {what}")
    return load(Path(root).expanduser(), InputSpec(input_size, m, s), val_size, int(seed))


def load_test_split(
    name: str,
    root: str | Path | None = None,
    *,
    input_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    val_size: int | float = 0.1,
    seed: int = 0,
) -> tuple[Dataset, int]:
    """Only what evaluation reads: ``(test split, number of classes)``.

    An image folder needs no ``train/``: its ``val/`` (else ``test/``, the folder the
    reference's ``test.py`` reads) is enough. Other datasets load as :func:`load_dataset`.
    """
    if str(name).strip().lower() != "imagefolder" or root is None:
        splits = load_dataset(
            name, root, input_size=input_size, mean=mean, std=std, val_size=val_size, seed=seed
        )
        return splits.test, splits.num_classes
    root = Path(root).expanduser()
    input_size = _check_input_size(input_size, str(root))
    m, s = _check_normalization(mean, std, None, str(root))
    return load_imagefolder_test(root, InputSpec(input_size, m, s))


def _check_normalization(
    mean: Sequence[float], std: Sequence[float], channels: int | None, where: str
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    try:
        m = tuple(float(v) for v in mean)
        s = tuple(float(v) for v in std)
    except (TypeError, ValueError):
        raise DatasetError(
            f"{where}: mean and std must be sequences of numbers, got {mean!r} and {std!r}"
        ) from None
    if len(m) != len(s) or not m:
        raise DatasetError(
            f"{where}: mean and std need one value per input channel and the same length, "
            f"got {len(m)} and {len(s)}"
        )
    if channels is not None and len(m) != channels:
        raise DatasetError(
            f"{where}: the images have {channels} channel(s) but mean/std have {len(m)} values; "
            f"expected {channels}"
        )
    if not all(math.isfinite(v) for v in m) or not all(math.isfinite(v) and v > 0 for v in s):
        raise DatasetError(f"{where}: std must be positive and mean/std finite, got {m} and {s}")
    return m, s


def _check_input_size(input_size: int, where: str) -> int:
    if isinstance(input_size, bool) or not isinstance(input_size, numbers.Integral):
        raise DatasetError(f"{where}: input_size must be a positive int, got {input_size!r}")
    if input_size < 1:
        raise DatasetError(f"{where}: input_size must be a positive int, got {input_size}")
    return int(input_size)
