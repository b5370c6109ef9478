"""What every stage works with: the device, the data, and replayable batch draws."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ponas.data import DataSplits, load_dataset, make_loader
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

    def batches(self, split: str, epoch: int, shuffle: bool = True) -> Iterator:
        """Epoch ``epoch`` of ``split`` (shuffled: whole batches only), the same on every
        replay: the order and augmentation are seeded from ``(seed, split, epoch)``."""
        loader = make_loader(
            getattr(self.data, split),
            self.cfg.batch_size,
            shuffle=shuffle,
            seed=derive_seed(self.cfg.seed, split),
            drop_last=shuffle,
            num_workers=self.cfg.num_workers,
        )
        loader.set_epoch(epoch)
        return iter(loader)

    def draw(self, split: str, epoch: int, n: int, next_epochs: Iterator[int]) -> list:
        """``n`` shuffled batches of ``split`` from epoch ``epoch`` on, going on to the epochs
        ``next_epochs`` gives as many times as needed."""
        out: list = []
        batches = self.batches(split, epoch)
        while len(out) < n:
            batch = next(batches, None)
            if batch is None:
                epoch = next(next_epochs)
                batches = self.batches(split, epoch)
                batch = next(batches, None)
                if batch is None:  # make_context refuses such data; never loop forever
                    raise ValueError(f"epoch {epoch} of the {split} split has no whole batch")
            out.append(batch)
        return out


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
