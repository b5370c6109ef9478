"""Splitting data sets: the seeded holdout (``split``), the :class:`DataSplits` of one data set,
a stratified subset, and a split's labels or examples at given positions (any data set)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset, TensorDataset

__all__ = ["DataSplits", "split", "stratified_subset", "subset", "targets"]


@dataclass
class DataSplits:
    """The splits of one dataset, ready for :func:`~ponas.data.loader.make_loader`.

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


def split(n: int, k: int, seed: int) -> tuple[Tensor, Tensor]:
    """Seeded split of ``range(n)`` into (rest, first k of the permutation), both sorted."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
    return perm[k:].sort().values, perm[:k].sort().values


def targets(dataset: Dataset) -> Tensor:
    """The labels of every example of ``dataset``, in order, without decoding any image."""
    if hasattr(dataset, "targets"):
        return torch.as_tensor(dataset.targets, dtype=torch.long)
    if isinstance(dataset, TensorDataset):
        return dataset.tensors[1].long()
    raise TypeError(f"cannot read the labels of {dataset!r} without decoding it")


def subset(dataset: Dataset, positions: Tensor) -> Dataset:
    """The examples of ``dataset`` at ``positions``, with the same transforms.

    A data set that knows how to cut itself (a ``subset(positions)`` method, as this package's
    data sets have) does; tensors are indexed; anything else is wrapped in a ``Subset``."""
    if callable(getattr(dataset, "subset", None)):
        return dataset.subset(positions)
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
