"""Datasets and loaders: digits (bundled with scikit-learn), CIFAR-10 (python pickle batches)
and ImageNet-style image folders, split into train / validation / test.

The validation split is always held out of the training data by a seeded permutation, so the
search never sees test data. Every split is a :class:`torch.utils.data.Dataset` whose items are
``(x float32 CHW normalized, y int64)``.

Speed matters more than generality here: a whole digits search runs on two CPU cores in
minutes. The in-memory datasets (digits, CIFAR-10) are :class:`TensorImageDataset` views over one
shared tensor; :func:`make_loader` builds their batches by indexing that tensor, with augmentation
and normalization done on the whole batch at once (no per-item Python, no worker processes).
Image folders go through :class:`torch.utils.data.DataLoader` behind the same interface.

Loaders are deterministic: epoch ``k`` shuffles (and augments) with a generator seeded by
``(seed, k)``, and :meth:`BatchLoader.set_epoch` replays any epoch, so a resumed search sees
exactly the batches it would have seen.
"""

from __future__ import annotations

import itertools
import math
import numbers
import pickle
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from ponas.catalog import (
    BUILTIN_DATASETS,
    DATASET_CHANNELS,
    DATASETS,
    DIGITS_TEST_FRACTION,
    DIGITS_TEST_SEED,
    PREFETCH_BATCHES,
    DatasetError,
    val_count,
)
from ponas.train import epoch_seed

__all__ = [
    "BUILTIN_DATASETS",
    "DATASETS",
    "DATASET_CHANNELS",
    "BatchLoader",
    "DataSplits",
    "DatasetError",
    "ImageFolderSplit",
    "RandomCropFlip",
    "TensorImageDataset",
    "load_dataset",
    "load_test_split",
    "make_loader",
    "stratified_subset",
    "subset",
    "targets",
]


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

# Augmentation callables take an unnormalized NCHW batch (uint8, or float in [0, 1]) and the
# loader's generator, and return a batch of the same dtype.
Augment = Callable[[Tensor, "torch.Generator | None"], Tensor]


def _one_line(exc: BaseException) -> str:
    """An exception's text on one line (error messages here must stay one line)."""
    return " ".join(str(exc).split()) or type(exc).__name__


@dataclass
class DataSplits:
    """The splits of one dataset, ready for :func:`make_loader`.

    ``train`` has training augmentation; ``val`` is held out of the training data and never
    overlaps ``train``; ``test`` is the dataset's own test split (never used by the search);
    ``train_eval`` is the training split with evaluation transforms, for BatchNorm
    recalibration. When ``train_eval`` is not given (hand-built splits, e.g. in tests) it
    defaults to ``train``.
    """

    train: Dataset
    val: Dataset
    test: Dataset
    num_classes: int
    in_channels: int
    input_size: int
    train_eval: Dataset | None = None
    classes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.train_eval is None:
            self.train_eval = self.train


# --------------------------------------------------------------------------------------------
# In-memory datasets and batch-wise augmentation
# --------------------------------------------------------------------------------------------


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


def _resize(x: Tensor, size: int) -> Tensor:
    """Bilinear resize of a float NCHW batch to ``size`` x ``size`` (antialiased when shrinking)."""
    if x.shape[-2] == size and x.shape[-1] == size:
        return x
    shrink = x.shape[-2] > size or x.shape[-1] > size
    return F.interpolate(
        x, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink
    )


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
            x = _resize(
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


# --------------------------------------------------------------------------------------------
# Loaders
# --------------------------------------------------------------------------------------------


class BatchLoader:
    """Re-iterable batches ``(x float32 NCHW, y int64)`` of a dataset; see :func:`make_loader`."""

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        drop_last: bool = False,
        num_workers: int = 0,
        rank: int = 0,
        world: int = 1,
        pin_memory: bool = False,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral):
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.num_workers = int(num_workers)
        if not 0 <= rank < world:
            raise ValueError(f"rank must be in 0..{world - 1}, got {rank}")
        self.rank, self.world = int(rank), int(world)
        self.pin_memory = bool(pin_memory)
        self.items_loaded = 0  # examples this process has decoded (its shard only)
        self._next_epoch = 0
        self._skip = 0
        self._persistent: DataLoader | None = None
        self._active: object = None

    @property
    def epoch(self) -> int:
        """The epoch whose permutation the next ``__iter__`` uses."""
        return self._next_epoch

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Make the next ``__iter__`` replay epoch ``epoch`` (0-based); later ones follow on.

        ``skip``: that iteration starts after its first ``skip`` batches, the same batches as
        a whole epoch's (an image folder does not decode the skipped ones)."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self._next_epoch = int(epoch)
        self._skip = int(skip)

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __repr__(self) -> str:
        return (
            f"BatchLoader({self.dataset!r}, batch_size={self.batch_size}, "
            f"shuffle={self.shuffle}, seed={self.seed}, drop_last={self.drop_last})"
        )

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        # The epoch counter moves when iteration starts (not when it ends), so an epoch
        # abandoned half-way still counts, as the contract says: k counts __iter__ calls.
        epoch, skip = self._next_epoch, self._skip
        self._next_epoch += 1
        self._skip = 0
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
        n = len(self.dataset)
        order = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
        if len(self) * self.batch_size < n:
            order = order[: len(self) * self.batch_size]  # drop_last
        if hasattr(self.dataset, "get_batch"):
            return self._iter_in_memory(order, generator, skip)
        if isinstance(self.dataset, TensorDataset):
            return self._iter_tensors(order, skip)
        return self._iter_dataloader(order, generator, skip)

    def _iter_in_memory(self, order: Tensor, generator: torch.Generator, skip: int) -> Iterator:
        # The whole global batch, then this rank's share: augmentation draws per batch (so
        # skipped batches are drawn too), and indexing a tensor costs little next to decoding
        # a JPEG.
        for b, idx in enumerate(self._batches(order)):
            x, y = self.dataset.get_batch(idx, generator=generator)
            if b >= skip:
                self.items_loaded += len(idx)
                yield self._shard(x), self._shard(y)

    def _iter_tensors(self, order: Tensor, skip: int) -> Iterator:
        for idx in itertools.islice(self._batches(order), skip, None):
            self.items_loaded += len(idx)
            yield tuple(self._shard(t[idx]) for t in self.dataset.tensors)

    def _shard(self, t: Tensor) -> Tensor:
        return t if self.world == 1 else t[self.rank :: self.world]

    def _batches(self, order: Tensor) -> Iterator[Tensor]:
        # Not ``order.split``: that yields one empty chunk for an empty order.
        bs = self.batch_size
        return (order[b * bs : (b + 1) * bs] for b in range(len(self)))

    def _iter_dataloader(self, order: Tensor, generator: torch.Generator, skip: int) -> Iterator:
        seeds = None
        seeded = getattr(self.dataset, "accepts_item_seeds", False)
        if seeded:
            # One seed per item makes augmentation independent of which worker process
            # (or the main process) loads the item, so epochs replay exactly.
            seeds = torch.randint(0, 2**62, (len(order),), generator=generator)
        # Under DDP each rank decodes only its share of every global batch (the slice
        # ``rank::world``, as the batch would be cut after decoding it whole).
        batches = _Batches(order, seeds, self.batch_size, range(skip, len(self)), self)
        # Seeds the workers' base seed from the epoch's stream, not the global RNG.
        worker_seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        if seeded and self.num_workers > 0:
            loader = self._persistent_loader()
            loader.batch_sampler.use(batches)
        else:
            loader = self._dataloader(batches, worker_seed, persistent=False)
        token = self._active = object()
        for batch in loader:
            if self._active is not token:
                raise RuntimeError("a loader's epoch was iterated after a later one began")
            self.items_loaded += len(batch[1])
            yield batch

    def _persistent_loader(self) -> DataLoader:
        """One DataLoader for every epoch: its workers stay up between epochs (every item
        carries its own seed, so augmentation does not depend on the workers' seeds)."""
        if self._persistent is None:
            empty = _Batches(torch.zeros(0, dtype=torch.long), None, 1, range(0), self)
            self._persistent = self._dataloader(empty, 0, persistent=True)
        return self._persistent

    def _dataloader(self, batches: _Batches, seed: int, persistent: bool) -> DataLoader:
        workers = self.num_workers
        return DataLoader(
            self.dataset,
            batch_sampler=batches,
            num_workers=workers,
            pin_memory=self.pin_memory,
            persistent_workers=persistent and workers > 0,
            prefetch_factor=PREFETCH_BATCHES if workers > 0 else None,
            generator=torch.Generator().manual_seed(seed),
        )


class _Batches:
    """The batch sampler of one epoch: this rank's share of each global batch, as item indices
    (with their augmentation seeds), listed only as the DataLoader asks for them. A persistent
    DataLoader reads its sampler in the main process at the start of every epoch, so the
    loader swaps in each epoch's contents."""

    def __init__(
        self, order: Tensor, seeds: Tensor | None, size: int, which: range, shard: BatchLoader
    ) -> None:
        self.order, self.seeds, self.size, self.which = order, seeds, size, which
        self.rank, self.world = shard.rank, shard.world

    def __iter__(self) -> Iterator[list]:
        for b in self.which:
            part = slice(b * self.size, (b + 1) * self.size)
            idx = self.order[part][self.rank :: self.world].tolist()
            if self.seeds is None:
                yield idx
            else:
                yield list(
                    zip(idx, self.seeds[part][self.rank :: self.world].tolist(), strict=True)
                )

    def __len__(self) -> int:
        return len(self.which)

    def use(self, other: _Batches) -> None:
        """Take ``other``'s contents (the next epoch of a persistent DataLoader)."""
        self.__dict__.update(other.__dict__)


def make_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int = 0,
    drop_last: bool = False,
    num_workers: int = 0,
    rank: int = 0,
    world: int = 1,
    pin_memory: bool = False,
) -> BatchLoader:
    """Batches of ``dataset`` as a re-iterable :class:`BatchLoader`.

    ``len(loader)`` is the number of batches. The k-th ``__iter__`` call (0-based) shuffles and
    augments with a generator seeded by ``(seed, k)``; ``loader.set_epoch(e)`` makes the next
    one replay epoch ``e``. In-memory datasets (:class:`TensorImageDataset`,
    :class:`~torch.utils.data.TensorDataset`) are batched by tensor indexing in the calling
    process and ignore ``num_workers``; other datasets go through a
    :class:`~torch.utils.data.DataLoader` with ``num_workers`` worker processes (kept up
    between epochs, each prefetching :data:`PREFETCH_BATCHES` batches; ``pin_memory`` for
    CUDA). With ``world > 1`` every batch is rank ``rank``'s share of the global batch (the
    slice ``rank::world``), and image folders decode only that share.
    """
    return BatchLoader(
        dataset,
        batch_size,
        shuffle=shuffle,
        seed=seed,
        drop_last=drop_last,
        num_workers=num_workers,
        rank=rank,
        world=world,
        pin_memory=pin_memory,
    )


def targets(dataset: Dataset) -> Tensor:
    """The labels of every example of ``dataset``, in order, without decoding any image."""
    if hasattr(dataset, "targets"):
        return torch.as_tensor(dataset.targets, dtype=torch.long)
    if isinstance(dataset, TensorDataset):
        return dataset.tensors[1].long()
    raise TypeError(f"cannot read the labels of {dataset!r} without decoding it")


def subset(dataset: Dataset, positions: Tensor) -> Dataset:
    """The examples of ``dataset`` at ``positions``, with the same transforms."""
    if isinstance(dataset, TensorImageDataset):
        return dataset.view(positions)
    if isinstance(dataset, ImageFolderSplit):
        kept = [dataset.indices[i] for i in positions.tolist()]
        return ImageFolderSplit(dataset.folder, kept, dataset.transform)
    if isinstance(dataset, TensorDataset):
        return TensorDataset(*(t[positions] for t in dataset.tensors))
    return Subset(dataset, positions.tolist())


def stratified_subset(labels: Tensor, size: int, seed: int) -> Tensor:
    """``size`` positions of ``labels`` (sorted), drawn per class in proportion to it.

    Every class gets ``floor`` or ``ceil`` of its share ``size * n_class / n`` (within one
    example); the classes that get the extra example and the examples themselves are drawn
    from a generator seeded by ``seed``. ``size >= len(labels)`` keeps every position.
    """
    n = labels.numel()
    if size >= n:
        return torch.arange(n)
    generator = torch.Generator().manual_seed(int(seed))
    classes, counts = labels.unique(return_counts=True)
    share = counts.double() * size / n
    take = share.floor().long()
    short = size - int(take.sum())
    if short:
        # Largest remainders first; ties (and equal remainders) broken by a seeded draw.
        jitter = torch.rand(len(classes), generator=generator, dtype=torch.float64) * 1e-9
        take[torch.argsort(share - take - jitter, descending=True)[:short]] += 1
    chosen = []
    for c, k in zip(classes.tolist(), take.tolist(), strict=True):
        members = (labels == c).nonzero().flatten()
        chosen.append(members[torch.randperm(len(members), generator=generator)[:k]])
    return torch.cat(chosen).sort().values


# --------------------------------------------------------------------------------------------
# Splitting and argument checks
# --------------------------------------------------------------------------------------------


def _split(n: int, k: int, seed: int) -> tuple[Tensor, Tensor]:
    """Seeded split of ``range(n)`` into (rest, first k of the permutation), both sorted."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
    return perm[k:].sort().values, perm[:k].sort().values


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


# --------------------------------------------------------------------------------------------
# digits
# --------------------------------------------------------------------------------------------


def _load_digits(
    input_size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    val_size: int | float,
    seed: int,
) -> DataSplits:
    from sklearn.datasets import load_digits  # lazy: scikit-learn is slow to import

    bunch = load_digits()
    # Values are 0..16; upscale once here (bilinear, align_corners=False) since the whole set
    # is small; _resize in TensorImageDataset is then a no-op per batch.
    images = torch.from_numpy(np.asarray(bunch.images, dtype=np.float32) / 16.0).unsqueeze(1)
    if input_size != images.shape[-1]:
        images = F.interpolate(
            images, size=(input_size, input_size), mode="bilinear", align_corners=False
        )
    labels = torch.from_numpy(np.asarray(bunch.target, dtype=np.int64))
    n = labels.numel()
    n_test = round(DIGITS_TEST_FRACTION * n)
    trainval, test_idx = _split(n, n_test, DIGITS_TEST_SEED)
    k = val_count(val_size, trainval.numel(), "digits")
    train_pos, val_pos = _split(trainval.numel(), k, seed)
    base = TensorImageDataset(
        images,
        labels,
        input_size=input_size,
        mean=mean,
        std=std,
        classes=[str(d) for d in range(10)],
    )
    # 1-2 pixel shifts: about a quarter of an original 8x8 pixel at 16x16.
    augment = RandomCropFlip(padding=1 if input_size < 16 else 2, flip=False)
    return DataSplits(
        train=base.view(trainval[train_pos], augment=augment),
        val=base.view(trainval[val_pos], augment=None),
        test=base.view(test_idx, augment=None),
        num_classes=10,
        in_channels=1,
        input_size=input_size,
        train_eval=base.view(trainval[train_pos], augment=None),
        classes=base.classes,
    )


# --------------------------------------------------------------------------------------------
# CIFAR-10
# --------------------------------------------------------------------------------------------

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
        raise DatasetError(f"{path}: cannot read the CIFAR-10 batch ({_one_line(exc)})") from None
    except Exception as exc:  # any unpickling failure at all means "not a batch"
        raise DatasetError(f"{path}: not a CIFAR-10 batch ({_one_line(exc)}); {what}") from None
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
        raise DatasetError(f"{path}: malformed CIFAR-10 batch ({_one_line(exc)}); {what}") from None
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


def _load_cifar10(
    root: Path,
    input_size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    val_size: int | float,
    seed: int,
) -> DataSplits:
    folder, batch_paths = _cifar_folder(root)
    parts = [_read_cifar_batch(p) for p in batch_paths]
    train_data = np.concatenate([d for d, _ in parts])
    train_labels = np.concatenate([y for _, y in parts])
    test_data, test_labels = _read_cifar_batch(folder / "test_batch")
    # Rows are the R, G and B planes one after another, each 32x32 row-major: plain NCHW.
    # Kept as uint8 at 32x32 (150 MB for the full set); resizing happens per batch.
    train_x = torch.from_numpy(train_data).reshape(-1, 3, 32, 32)
    test_x = torch.from_numpy(test_data).reshape(-1, 3, 32, 32)
    k = val_count(val_size, train_x.shape[0], str(folder))
    train_idx, val_idx = _split(train_x.shape[0], k, seed)
    common = dict(input_size=input_size, mean=mean, std=std, classes=CIFAR10_CLASSES)
    base = TensorImageDataset(train_x, torch.from_numpy(train_labels), **common)
    # RandomCrop(32, padding=4) + flip, the padding scaled with the image when resized.
    augment = RandomCropFlip(padding=max(1, round(4 * input_size / 32)), flip=True)
    return DataSplits(
        train=base.view(train_idx, augment=augment),
        val=base.view(val_idx, augment=None),
        test=TensorImageDataset(test_x, torch.from_numpy(test_labels), **common),
        num_classes=10,
        in_channels=3,
        input_size=input_size,
        train_eval=base.view(train_idx, augment=None),
        classes=CIFAR10_CLASSES,
    )


# --------------------------------------------------------------------------------------------
# ImageFolder
# --------------------------------------------------------------------------------------------


def _load_image(path: str, mode: str) -> Any:
    """Open an image as PIL in ``mode`` ("RGB" or "L"); module-level so workers can pickle it."""
    from PIL import Image

    with open(path, "rb") as f:
        img = Image.open(f)
        return img.convert(mode)


class ImageFolderSplit(Dataset):
    """A subset of a torchvision ``ImageFolder`` with its own transform.

    Items may be requested as ``i`` or ``(i, seed)``; with a seed, the random transforms draw
    from torch's RNG seeded with it (restored afterwards), which :class:`BatchLoader` uses to
    make augmentation reproducible in any worker.
    """

    accepts_item_seeds = True

    def __init__(self, folder: Any, indices: Sequence[int] | None, transform: Callable) -> None:
        self.folder = folder
        self.indices = list(range(len(folder.samples))) if indices is None else list(indices)
        self.transform = transform
        self.classes = tuple(folder.classes)

    def __len__(self) -> int:
        return len(self.indices)

    def __repr__(self) -> str:
        return f"ImageFolderSplit({self.folder.root!r}, n={len(self)})"

    @property
    def targets(self) -> Tensor:
        """Labels of this split, in order (int64)."""
        return torch.tensor([self.folder.samples[i][1] for i in self.indices], dtype=torch.long)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[Tensor, int]:
        i, seed = item if isinstance(item, tuple) else (item, None)
        path, target = self.folder.samples[self.indices[i]]
        try:
            img = self.folder.loader(path)
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{path}: cannot read the image ({_one_line(exc)})") from None
        if seed is None:
            return self.transform(img), target
        # The CPU generator alone, saved and restored around the transform: what
        # ``fork_rng`` + ``torch.manual_seed`` do for the transforms (they draw on the CPU), at a
        # fiftieth of the cost (manual_seed also seeds every accelerator's generators).
        generator = torch.default_generator
        state = generator.get_state()
        generator.manual_seed(seed)
        try:
            return self.transform(img), target
        finally:
            generator.set_state(state)


def _image_folder(path: Path, mode: str) -> Any:
    from torchvision.datasets import ImageFolder  # lazy: torchvision is slow to import

    if not path.is_dir():
        raise DatasetError(
            f"{path}: no such folder; expected ImageNet-style class subfolders of images"
        )
    try:
        return ImageFolder(str(path), loader=partial(_load_image, mode=mode))
    except (FileNotFoundError, OSError) as exc:
        raise DatasetError(
            f"{path}: {_one_line(exc)}; expected ImageNet-style class subfolders of images"
        ) from None


def _image_mode(root: Path, mean: tuple[float, ...]) -> str:
    """PIL's mode for images normalized with ``mean``: RGB or greyscale."""
    if len(mean) not in (1, 3):
        raise DatasetError(
            f"{root}: mean/std have {len(mean)} values; expected 3 (RGB) or 1 (greyscale)"
        )
    return "RGB" if len(mean) == 3 else "L"


def _eval_transform(input_size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> Any:
    """The reference's evaluation preprocessing: resize to size / 0.875, center crop, normalize."""
    from torchvision import transforms as T

    return T.Compose(
        [
            T.Resize(int(input_size / 0.875)),
            T.CenterCrop(input_size),
            T.ToTensor(),
            T.Normalize(mean, std),
        ]
    )


def _load_imagefolder(
    root: Path,
    input_size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    val_size: int | float,
    seed: int,
) -> DataSplits:
    from torchvision import transforms as T

    if not root.is_dir():
        raise DatasetError(
            f"{root}: no such folder; expected a folder with train/ and val/ or test/"
        )
    if not (root / "train").is_dir():
        raise DatasetError(
            f"{root}: no train/ folder; expected train/ and val/ or test/ "
            "(ImageNet-style class subfolders)"
        )
    test_dir = next((root / d for d in ("val", "test") if (root / d).is_dir()), None)
    if test_dir is None:
        raise DatasetError(
            f"{root}: no val/ or test/ folder; expected train/ and val/ or test/ "
            "(ImageNet-style class subfolders)"
        )
    mode = _image_mode(root, mean)
    train_folder = _image_folder(root / "train", mode)
    test_folder = _image_folder(test_dir, mode)
    if train_folder.classes != test_folder.classes:
        only_train = sorted(set(train_folder.classes) - set(test_folder.classes))
        only_test = sorted(set(test_folder.classes) - set(train_folder.classes))
        raise DatasetError(
            f"{root}: the class folders of train/ and {test_dir.name}/ differ (only in train: "
            f"{only_train}, only in {test_dir.name}: {only_test}); expected the same classes"
        )
    normalize = [T.ToTensor(), T.Normalize(mean, std)]
    train_tf = T.Compose([T.RandomResizedCrop(input_size), T.RandomHorizontalFlip(), *normalize])
    eval_tf = _eval_transform(input_size, mean, std)
    k = val_count(val_size, len(train_folder.samples), str(root / "train"))
    train_idx, val_idx = _split(len(train_folder.samples), k, seed)
    train_idx, val_idx = train_idx.tolist(), val_idx.tolist()
    return DataSplits(
        train=ImageFolderSplit(train_folder, train_idx, train_tf),
        val=ImageFolderSplit(train_folder, val_idx, eval_tf),
        test=ImageFolderSplit(test_folder, None, eval_tf),
        num_classes=len(train_folder.classes),
        in_channels=len(mean),
        input_size=input_size,
        train_eval=ImageFolderSplit(train_folder, train_idx, eval_tf),
        classes=tuple(train_folder.classes),
    )


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


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
    if key == "digits":
        return _load_digits(input_size, m, s, val_size, int(seed))
    if key == "shapes":  # generated in memory (ponas/synthetic.py), nothing to download
        from ponas.synthetic import load_shapes

        return load_shapes(input_size, m, s, val_size, int(seed))
    if root is None:
        what = (
            "the folder of CIFAR-10 python pickle batches (data_batch_1..5, test_batch)"
            if key == "cifar10"
            else "a folder with train/ and val/ or test/ (ImageNet-style class subfolders)"
        )
        raise DatasetError(f"{key}: no root given; expected {what}")
    root = Path(root).expanduser()
    if key == "cifar10":
        return _load_cifar10(root, input_size, m, s, val_size, int(seed))
    return _load_imagefolder(root, input_size, m, s, val_size, int(seed))


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
    test_dir = next((root / d for d in ("val", "test") if (root / d).is_dir()), None)
    if test_dir is None:
        raise DatasetError(
            f"{root}: no val/ or test/ folder; expected a folder with val/ or test/ "
            "(ImageNet-style class subfolders)"
        )
    folder = _image_folder(test_dir, _image_mode(root, m))
    return ImageFolderSplit(folder, None, _eval_transform(input_size, m, s)), len(folder.classes)
