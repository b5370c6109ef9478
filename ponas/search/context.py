"""What every stage works with: the device, the data, and replayable batch draws."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from ponas.data import (
    DataSplits,
    load_dataset,
    make_loader,
    stratified_subset,
    subset,
    targets,
)
from ponas.search.callbacks import Cancelled, SearchCallback
from ponas.search.checkpoint import checkpoint_dir, save_checkpoint
from ponas.search.config import ConfigError, SearchConfig, resolve
from ponas.space import SearchSpace
from ponas.train import autocast, derive_seed, pick_device


@dataclass
class Context:
    """What a stage needs: space, config, data, device, output folder and callback."""

    space: SearchSpace
    cfg: SearchConfig
    data: DataSplits
    device: torch.device
    out: Path
    callback: SearchCallback = field(default_factory=SearchCallback)
    _loaders: dict = field(default_factory=dict, repr=False)

    @property
    def ckpt_dir(self) -> Path:
        return checkpoint_dir(self.out)

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def amp(self) -> bool:
        """Whether steps run under bfloat16 autocast (CUDA and ``cfg.amp``)."""
        return self.cuda and self.cfg.amp

    def check_stop(self) -> None:
        if self.callback.should_stop():
            raise Cancelled("search cancelled; resume continues from the last checkpoint")

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        if self.cfg.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def prepare(self, module: nn.Module) -> nn.Module:
        """Move a model to the device (channels_last memory format when configured)."""
        module = module.to(self.device)
        if self.cfg.channels_last:
            module = module.to(memory_format=torch.channels_last)
        return module

    def autocast(self):
        return autocast(self.amp)

    def save_checkpoint(self, name: str, payload: dict[str, Any]) -> Path:
        """Write ``checkpoints/name`` and tell the callback."""
        path = save_checkpoint(self.out, self.space, self.cfg, name, payload)
        self.callback.checkpoint_saved(path)
        return path

    def split(self, name: str) -> Dataset:
        """The dataset of split ``name``; ``"val"`` is the validation subset the search
        scores on (see :meth:`validation`)."""
        return self.validation[0] if name == "val" else getattr(self.data, name)

    @cached_property
    def validation(self) -> tuple[Dataset, dict[str, Any]]:
        """The validation subset every table entry is scored on, and how it was drawn.

        ``eval_batches * batch_size`` examples of the validation split, seeded and stratified
        by class (every class in proportion, within one example), chosen once per search: it
        depends only on the seed and the split. A split that small is used whole, in order.
        """
        val = self.data.val
        size = min(len(val), self.cfg.eval_batches * self.cfg.batch_size)
        if size == len(val):
            return val, {"images": size, "of": size, "drawn": "the whole validation split"}
        labels = targets(val)
        chosen = stratified_subset(labels, size, derive_seed(self.cfg.stage2_seeding, "validation"))
        info = {
            "images": size,
            "of": len(val),
            "classes": int(labels[chosen].unique().numel()),
            "drawn": "stratified by class, seeded by the search seed",
        }
        return subset(val, chosen), info

    def loader(self, split: str, shuffle: bool = True, rank: int = 0, world: int = 1):
        """The loader of ``split``, built once: its worker processes persist across epochs."""
        key = (split, shuffle, rank, world)
        if key not in self._loaders:
            self._loaders[key] = make_loader(
                self.split(split),
                self.cfg.batch_size,
                shuffle=shuffle,
                seed=derive_seed(self.cfg.seed, split),
                drop_last=shuffle,
                num_workers=self.cfg.num_workers,
                rank=rank,
                world=world,
                pin_memory=self.cuda,
            )
        return self._loaders[key]

    def batches(
        self,
        split: str,
        epoch: int,
        shuffle: bool = True,
        rank: int = 0,
        world: int = 1,
        skip: int = 0,
    ) -> Iterator:
        """Epoch ``epoch`` of ``split`` (shuffled: whole batches only), the same on every
        replay: the order and augmentation are seeded from ``(seed, split, epoch)``. With
        ``world > 1``, rank ``rank``'s share of every global batch (decoded by this rank only).
        ``skip``: start after the epoch's first ``skip`` batches.
        """
        loader = self.loader(split, shuffle, rank, world)
        loader.set_epoch(epoch, skip)
        return iter(loader)

    def stream(self, split: str, epochs: Iterator[int], n: int) -> Stream:
        """``n`` shuffled batches of ``split``: the first epoch ``epochs`` gives, then the next
        ones as many as needed (see :class:`Stream`)."""
        per_epoch = len(self.split(split)) // self.cfg.batch_size
        if per_epoch < 1:  # make_context refuses such data; never loop forever
            raise ValueError(f"the {split} split has no whole batch")
        return Stream(self, split, [next(epochs) for _ in range(-(-n // per_epoch))], n)


@dataclass(frozen=True)
class Stream:
    """Replayable batches: ``n`` shuffled batches of ``split``, from ``epochs`` in turn.

    Nothing is held: every iteration decodes the batches again as they are used, and gives
    the same batches (order and augmentation are seeded per epoch), so every candidate of a
    layer sees identical data while host memory stays independent of ``n``.
    """

    ctx: Context
    split: str
    epochs: list[int]
    n: int

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator:
        return self.iter_from(0)

    def iter_from(self, skip: int) -> Iterator:
        """The batches after the first ``skip`` (those are not decoded where avoidable)."""
        per_epoch = len(self.ctx.split(self.split)) // self.ctx.cfg.batch_size
        left = self.n - skip
        for i, epoch in enumerate(self.epochs):
            if skip >= (i + 1) * per_epoch or left <= 0:
                continue
            start = max(skip - i * per_epoch, 0)
            for batch in itertools.islice(self.ctx.batches(self.split, epoch, skip=start), left):
                left -= 1
                yield batch


def make_context(
    space: SearchSpace | str,
    overrides: dict[str, Any] | None = None,
    out: str | Path = "runs/search",
    callback: SearchCallback | None = None,
    data: DataSplits | None = None,
) -> Context:
    """Resolve the settings, pick the device and load the data (unless ``data`` is given).

    Refuses (:class:`ConfigError`) settings the data cannot serve, before any training.
    """
    space, cfg = resolve(space, overrides)
    device = pick_device({"auto": None, "cpu": False, "cuda": True}[cfg.device])
    if cfg.device == "cuda" and device.type != "cuda":
        raise ConfigError("device=cuda but no CUDA device is available; use device=auto or cpu")
    if data is None:
        data = load_dataset(
            cfg.dataset,
            cfg.dataset_dir,
            input_size=space.input_size,
            mean=space.mean,
            std=space.std,
            val_size=cfg.val_size if cfg.val_size < 1 else int(cfg.val_size),
            seed=cfg.seed,
        )
    if data.in_channels != space.in_channels:
        raise ConfigError(
            f"the {cfg.dataset} data has {data.in_channels} input channels, the {space.name!r} "
            f"space expects {space.in_channels}"
        )
    check_batches(cfg, data)
    if data.num_classes != space.num_classes:
        space = space.replace(num_classes=data.num_classes)
    return Context(space, cfg, data, device, Path(out), callback or SearchCallback())


def check_batches(cfg: SearchConfig, data: DataSplits) -> None:
    """Training, fine-tuning and BatchNorm recalibration draw whole batches of the training
    split: refuse a batch size that no epoch can fill."""
    n = min(len(data.train), len(data.train_eval))
    if n < cfg.batch_size:
        raise ConfigError(
            f"batch_size {cfg.batch_size} is larger than the training split ({n} examples after "
            f"holding out val_size={cfg.val_size:g}), so no epoch gives a whole batch; "
            f"use batch_size <= {n} or more training data"
        )
