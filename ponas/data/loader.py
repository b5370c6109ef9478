"""Batches of any data set: :class:`BatchLoader`, deterministic and replayable by epoch.

The loader knows no data set. A data set with a ``get_batch(indices, generator)`` method (the
in-memory :class:`~ponas.data.tensor.TensorImageDataset`) is batched by tensor indexing in the
calling process, with augmentation on the whole batch; a
:class:`~torch.utils.data.TensorDataset` is indexed; anything else goes through a
:class:`~torch.utils.data.DataLoader`, with one augmentation seed per item when the data set
says ``accepts_item_seeds`` (an image folder), so any worker draws the same augmentation.

Epoch ``k`` shuffles (and augments) with a generator seeded by ``(seed, k)``, and
:meth:`BatchLoader.set_epoch` replays any epoch, so a resumed search sees exactly the batches
it would have seen.
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, TensorDataset

from ponas.catalog import PREFETCH_BATCHES
from ponas.train import epoch_seed

__all__ = ["BatchLoader", "make_loader"]


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


def make_loader(dataset: Dataset, batch_size: int, *, shuffle: bool, **options: Any) -> BatchLoader:
    """Batches of ``dataset`` as a re-iterable :class:`BatchLoader`.

    ``options``: ``seed`` (0), ``drop_last`` (False), ``num_workers`` (0), ``rank`` (0),
    ``world`` (1), ``pin_memory`` (False), as :class:`BatchLoader` takes them.
    ``len(loader)`` is the number of batches. The k-th ``__iter__`` call (0-based) shuffles and
    augments with a generator seeded by ``(seed, k)``; ``loader.set_epoch(e)`` makes the next
    one replay epoch ``e``. In-memory datasets (:class:`~ponas.data.tensor.TensorImageDataset`,
    :class:`~torch.utils.data.TensorDataset`) are batched by tensor indexing in the calling
    process and ignore ``num_workers``; other datasets go through a
    :class:`~torch.utils.data.DataLoader` with ``num_workers`` worker processes (kept up
    between epochs, each prefetching :data:`PREFETCH_BATCHES` batches; ``pin_memory`` for
    CUDA). With ``world > 1`` every batch is rank ``rank``'s share of the global batch (the
    slice ``rank::world``), and image folders decode only that share.
    """
    return BatchLoader(dataset, batch_size, shuffle=shuffle, **options)
