"""The search: stage 1 meta-training, stage 2 progressive fine-tuning -> AccuracyTable.

Stage 1 trains the supernet with single-path uniform sampling (one candidate per layer per
step). Stage 2 walks the layers from the input side: for every candidate of layer ``l`` it
fine-tunes briefly from the same weights with the chosen prefix frozen and the suffix sampled,
then measures validation accuracy averaged over one shared set of sampled suffixes (common
random numbers), recalibrating BatchNorm before every evaluation. The mean is ``A[l][c]``; the
best candidate is fixed and its fine-tuned weights carried on.

Everything reports through a :class:`SearchCallback` and nothing here knows about Django or
Celery. Checkpoints are written after every stage-1 epoch and every stage-2 layer; a resumed
search gives the same table as an uninterrupted one with the same seed, because every random
draw is seeded from ``(seed, stage, epoch or layer, candidate)`` rather than from history.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ponas.blocks import recalibrate_bn
from ponas.data import DataSplits, load_dataset, make_loader
from ponas.export import versions
from ponas.files import atomic_write, atomic_write_text
from ponas.space import SearchSpace, load_space
from ponas.supernet import Supernet
from ponas.train import evaluate, pick_device

CHECKPOINT_FORMAT = "ponas-checkpoint/1"
SUPERNET_FORMAT = "ponas-supernet/1"


class Cancelled(Exception):
    """The callback asked the search to stop; the last checkpoint is intact."""


class ConfigError(ValueError):
    """A search configuration key or value is not valid."""


# ---- configuration ------------------------------------------------------------------------


@dataclass
class SearchConfig:
    """Training knobs of a search. Defaults come from the preset's ``search:`` section."""

    epochs: int = 60
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    nesterov: bool = True
    label_smoothing: float = 0.0
    warmup_epochs: int = 0
    finetune_steps: int = 40
    finetune_lr: float = 0.02
    suffix_samples: int = 4
    bn_batches: int = 4
    val_size: float = 0.1
    eval_batches: int = 5
    num_workers: int = 0
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    ngpu: int = 1
    amp: bool = True  # used on CUDA only
    channels_last: bool = True  # NHWC: faster depthwise convs on CUDA and on the CPU alike
    feature_cache_mb: int = 2048  # stage-2 prefix features kept in memory per layer
    reuse_prefix_features: bool = True
    dataset: str = ""
    dataset_dir: str | None = None
    input_size: int = 0  # 0 = the space's

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SearchConfig:
        """Validate and convert (YAML and JSON give strings, ints, floats)."""
        unknown = sorted(set(values) - set(cls.keys()))
        if unknown:
            raise ConfigError(f"unknown search settings {unknown}; allowed: {sorted(cls.keys())}")
        cfg = cls()
        for f in dataclasses.fields(cls):
            if f.name not in values or values[f.name] is None and f.name != "dataset_dir":
                continue
            raw = values[f.name]
            kind = type(getattr(cfg, f.name)) if f.name != "dataset_dir" else str
            try:
                if kind is bool:
                    if isinstance(raw, str):
                        if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                            raise ValueError(raw)
                        raw = raw.lower() in ("true", "1", "yes")
                    value = bool(raw)
                elif kind is int:
                    if isinstance(raw, float) and not raw.is_integer() or isinstance(raw, bool):
                        raise ValueError(raw)
                    value = int(raw)
                elif kind is float:
                    value = float(raw)
                else:
                    value = None if raw is None else str(raw)
            except (TypeError, ValueError):
                raise ConfigError(f"{f.name}={raw!r} is not a valid {kind.__name__}") from None
            setattr(cfg, f.name, value)
        cfg.check()
        return cfg

    def check(self) -> None:
        at_least_one = [
            "epochs",
            "batch_size",
            "finetune_steps",
            "suffix_samples",
            "bn_batches",
            "eval_batches",
            "ngpu",
        ]
        for key in at_least_one:
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be at least 1, got {getattr(self, key)}")
        # Far beyond any real search, but a typo like epochs=1e9 should not occupy a GPU forever.
        at_most = {
            "epochs": 10_000,
            "batch_size": 65_536,
            "finetune_steps": 1_000_000,
            "suffix_samples": 1_000,
            "bn_batches": 10_000,
            "eval_batches": 100_000,
            "ngpu": 1_024,
            "num_workers": 256,
            "warmup_epochs": 10_000,
            "input_size": 4_096,
        }
        for key, limit in at_most.items():
            if getattr(self, key) > limit:
                raise ConfigError(f"{key} must be at most {limit:,}, got {getattr(self, key):,}")
        for key in ("lr", "finetune_lr"):
            if not 0 < getattr(self, key) < 10:
                raise ConfigError(f"{key} must be in (0, 10), got {getattr(self, key)}")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"momentum must be in [0, 1), got {self.momentum}")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.weight_decay < 0 or self.warmup_epochs < 0 or self.num_workers < 0:
            raise ConfigError("weight_decay, warmup_epochs and num_workers must not be negative")
        if self.warmup_epochs >= self.epochs and self.warmup_epochs:
            raise ConfigError(
                f"warmup_epochs ({self.warmup_epochs}) must be below epochs ({self.epochs})"
            )
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"device must be auto, cpu or cuda, got {self.device!r}")
        if self.val_size <= 0:
            raise ConfigError(f"val_size must be positive, got {self.val_size}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def resolve(
    space: SearchSpace | str, overrides: dict[str, Any] | None = None
) -> tuple[SearchSpace, SearchConfig]:
    """The space (input size overridden if asked) and its config: preset knobs + overrides."""
    if not isinstance(space, SearchSpace):
        space = load_space(space)
    values = {"dataset": space.dataset, **space.search, **(overrides or {})}
    cfg = SearchConfig.from_dict(values)
    if cfg.input_size and cfg.input_size != space.input_size:
        space = space.replace(input_size=cfg.input_size)
    cfg.input_size = space.input_size
    return space, cfg


# ---- progress -------------------------------------------------------------------------------


class SearchCallback:
    """Receives progress. Subclass and override what you need; all methods are optional.

    ``should_stop`` is polled at every step boundary: returning True raises :class:`Cancelled`
    there, leaving the last checkpoint intact.
    """

    def stage_started(self, stage: str, total_steps: int) -> None: ...

    def step(self, stage: str, step: int, total_steps: int, metrics: dict[str, float]) -> None: ...

    def epoch_end(self, epoch: int, epochs: int, metrics: dict[str, float]) -> None: ...

    def candidate_done(self, layer: int, candidate: str, accuracy: float) -> None: ...

    def row_done(self, layer: int, row: list[float | None], chosen: str) -> None: ...

    def checkpoint_saved(self, path: Path) -> None: ...

    def done(self, table: Any) -> None: ...

    def failed(self, error: str) -> None: ...

    def should_stop(self) -> bool:
        return False


class TqdmCallback(SearchCallback):
    """Progress bars (tqdm, on stderr) for both stages: what `ponas search` shows."""

    def __init__(self) -> None:
        self.bar = None
        self.done_candidates = 0

    def stage_started(self, stage: str, total_steps: int) -> None:
        from tqdm import tqdm

        self.close()
        desc = {
            "stage1": "stage 1: meta-training",
            "stage2": "stage 2: table",
            "finetune": "fine-tuning",
        }.get(stage, stage)
        unit = "candidate" if stage == "stage2" else "step"
        self.bar = tqdm(
            total=total_steps, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True
        )

    def step(self, stage: str, step: int, total_steps: int, metrics: dict) -> None:
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            if step % 10 == 0:
                self.bar.set_postfix(loss=f"{metrics['loss']:.3f}", refresh=False)

    def epoch_end(self, epoch: int, epochs: int, metrics: dict) -> None:
        if self.bar is not None:
            self.bar.write(
                f"epoch {epoch}/{epochs}: loss {metrics['train_loss']:.3f}, "
                f"train acc {100 * metrics['train_acc']:.1f}%, {metrics['images_per_s']:.0f} img/s"
            )

    def candidate_done(self, layer: int, candidate: str, accuracy: float) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(
                layer=layer, last=f"{candidate} {100 * accuracy:.1f}%", refresh=False
            )

    def row_done(self, layer: int, row: list, chosen: str) -> None:
        if self.bar is not None:
            best = max(a for a in row if a is not None)
            self.bar.write(f"layer {layer}: chose {chosen} ({100 * best:.1f}% validation)")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


# ---- the run context ------------------------------------------------------------------------


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
        return self.out / "checkpoints"

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

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
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.cuda and self.cfg.amp)


def make_context(
    space: SearchSpace | str,
    overrides: dict[str, Any] | None = None,
    out: str | Path = "runs/search",
    callback: SearchCallback | None = None,
    data: DataSplits | None = None,
) -> Context:
    """Resolve the settings, pick the device and load the data (unless ``data`` is given)."""
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
    if data.num_classes != space.num_classes:
        space = space.replace(num_classes=data.num_classes)
    return Context(space, cfg, data, device, Path(out), callback or SearchCallback())


def _seed(*parts: Any) -> int:
    """A 63-bit seed derived from parts, independent of Python's hash randomization."""
    h = 1469598103934665603
    for part in parts:
        for ch in repr(part).encode():
            h = ((h ^ ch) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h & 0x7FFFFFFFFFFFFFFF


def _batches(ctx: Context, split: str, epoch: int, shuffle: bool = True) -> Iterator:
    ds = getattr(ctx.data, split)
    loader = make_loader(
        ds,
        ctx.cfg.batch_size,
        shuffle=shuffle,
        seed=_seed(ctx.cfg.seed, split),
        drop_last=shuffle,
        num_workers=ctx.cfg.num_workers,
    )
    loader.set_epoch(epoch)
    return iter(loader)


def _take(it: Iterator, n: int, restart: Callable[[], Iterator]) -> list:
    """``n`` batches from ``it``, restarting it (next epoch) when it runs out."""
    out = []
    while len(out) < n:
        try:
            out.append(next(it))
        except StopIteration:
            it = restart()
            out.append(next(it))
    return out


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _save_checkpoint(ctx: Context, name: str, payload: dict[str, Any]) -> Path:
    payload = {
        "format": CHECKPOINT_FORMAT,
        "space": ctx.space.to_dict(),
        "config": ctx.cfg.to_dict(),
        **payload,
    }
    path = atomic_write(ctx.ckpt_dir / name, lambda tmp: torch.save(payload, tmp))
    ctx.callback.checkpoint_saved(path)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A search checkpoint (stage 1 epoch or stage 2 layer), loaded onto the CPU."""
    obj = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(obj, dict) or obj.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a PONAS search checkpoint")
    return obj


# ---- stage 1 --------------------------------------------------------------------------------


def _lr_at(cfg: SearchConfig, step: int, steps_per_epoch: int) -> float:
    """Linear warm-up, then cosine decay to zero over the remaining steps."""
    total = cfg.epochs * steps_per_epoch
    warm = cfg.warmup_epochs * steps_per_epoch
    if step < warm:
        return cfg.lr * (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return 0.5 * cfg.lr * (1 + math.cos(math.pi * progress))


def _make_optimizer(params, cfg: SearchConfig, lr: float) -> torch.optim.SGD:
    decay, no_decay = [], []
    for p in params:
        (no_decay if p.dim() <= 1 else decay).append(p)
    return torch.optim.SGD(
        [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov and cfg.momentum > 0,
    )


def train_step(
    ctx: Context,
    model: Callable[..., torch.Tensor],
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    *args: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One SGD step on a batch already on the device: (loss, logits). Stage 1 and stage 2's
    fine-tunes take it. ``args`` follow the batch into the model (e.g. the sampled path)."""
    with ctx.autocast():
        logits = model(x, *args)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=ctx.cfg.label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss, logits


def stage1(
    ctx: Context,
    supernet: Supernet,
    resume: dict[str, Any] | None = None,
    rank: int = 0,
    world: int = 1,
    ddp_model: nn.Module | None = None,
) -> dict[str, float]:
    """Meta-train ``supernet`` with single-path uniform sampling; checkpoint every epoch.

    With ``world > 1`` (called by :func:`_ddp_worker`), every rank samples the same path each
    step and trains on its slice of the same batch; gradients are averaged by DDP.
    """
    cfg = ctx.cfg
    steps_per_epoch = len(ctx.data.train) // cfg.batch_size
    if steps_per_epoch < 1:
        raise ConfigError(
            f"batch_size {cfg.batch_size} is larger than the training split "
            f"({len(ctx.data.train)} examples)"
        )
    optimizer = _make_optimizer(supernet.parameters(), cfg, cfg.lr)
    start_epoch = 0
    metrics: dict[str, float] = {}
    if resume is not None:
        supernet.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        start_epoch = resume["epoch"] + 1
        metrics = resume.get("metrics", {})
    model = ddp_model or supernet
    total = cfg.epochs * steps_per_epoch
    if rank == 0:
        ctx.callback.stage_started("stage1", total)
    for epoch in range(start_epoch, cfg.epochs):
        # Each epoch's randomness is derived from (seed, epoch), so a resumed epoch replays.
        torch.manual_seed(_seed(cfg.seed, "stage1", epoch))
        paths = random.Random(_seed(cfg.seed, "paths", epoch))
        supernet.train()
        loss_sum = correct = seen = 0.0
        t0 = time.perf_counter()
        for i, (x, y) in enumerate(_batches(ctx, "train", epoch)):
            if i >= steps_per_epoch:
                break
            ctx.check_stop()
            step = epoch * steps_per_epoch + i
            for group in optimizer.param_groups:
                group["lr"] = _lr_at(cfg, step, steps_per_epoch)
            choices = supernet.sample(paths)
            if world > 1:
                x, y = x[rank::world], y[rank::world]
            x, y = ctx.to_device(x), y.to(ctx.device)
            loss, logits = train_step(ctx, model, optimizer, x, y, choices)
            loss_sum += loss.item() * y.numel()
            correct += (logits.argmax(1) == y).sum().item()
            seen += y.numel()
            if rank == 0:
                ctx.callback.step(
                    "stage1",
                    step + 1,
                    total,
                    {"loss": loss.item(), "lr": optimizer.param_groups[0]["lr"]},
                )
        metrics = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / max(seen, 1),
            "train_acc": correct / max(seen, 1),
            "images_per_s": seen * world / max(time.perf_counter() - t0, 1e-9),
        }
        if rank == 0:
            ctx.callback.epoch_end(epoch + 1, cfg.epochs, metrics)
            _save_checkpoint(
                ctx,
                "stage1.pt",
                {
                    "stage": "stage1",
                    "epoch": epoch,
                    "model": supernet.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "metrics": metrics,
                    "rng": _rng_state(),
                },
            )
    return metrics


def _ddp_worker(
    rank: int, world: int, port: int, space_dict: dict, overrides: dict, out: str
) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    use_cuda = overrides.get("device") != "cpu" and torch.cuda.is_available()
    backend = "nccl" if use_cuda else "gloo"
    dist.init_process_group(
        backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        torch.set_num_threads(max(1, torch.get_num_threads() // world))
        if use_cuda:
            torch.cuda.set_device(rank)
        ctx = make_context(SearchSpace.from_dict(space_dict), overrides, out)
        if use_cuda:
            ctx.device = torch.device("cuda", rank)
        torch.manual_seed(_seed(ctx.cfg.seed, "init"))
        supernet = ctx.prepare(Supernet(ctx.space))
        resume = _latest(ctx, "stage1.pt")
        ddp = DDP(
            _PathModule(supernet),
            device_ids=[rank] if use_cuda else None,
            find_unused_parameters=True,
        )
        stage1(ctx, supernet, resume, rank=rank, world=world, ddp_model=ddp)
        # Every rank must end with identical weights; check it rather than assume it.
        # (BatchNorm running statistics differ per rank, as each sees its own slice; they are
        # recalibrated before any evaluation, and rank 0's are the ones saved.)
        fingerprint = torch.stack([p.detach().double().sum() for p in supernet.parameters()])
        gathered = [torch.zeros_like(fingerprint) for _ in range(world)]
        dist.all_gather(gathered, fingerprint.to(ctx.device) if use_cuda else fingerprint)
        if rank == 0:
            diff = max((g.cpu() - fingerprint.cpu()).abs().max().item() for g in gathered)
            atomic_write_text(
                ctx.ckpt_dir / "ddp.json", json.dumps({"world": world, "max_weight_diff": diff})
            )
    finally:
        dist.destroy_process_group()


class _PathModule(nn.Module):
    """Adapts ``supernet(x, choices)`` to DDP, which wraps a module called with tensors."""

    def __init__(self, supernet: Supernet) -> None:
        super().__init__()
        self.supernet = supernet

    def forward(self, x: torch.Tensor, choices: Sequence[str]) -> torch.Tensor:
        return self.supernet(x, choices)


def run_stage1_ddp(ctx: Context, overrides: dict[str, Any], world: int) -> None:
    """Stage 1 on ``world`` processes (one per GPU, or gloo ranks on the CPU)."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(
        _ddp_worker,
        args=(world, port, ctx.space.to_dict(), overrides, str(ctx.out)),
        nprocs=world,
        join=True,
    )


# ---- stage 2 --------------------------------------------------------------------------------


@dataclass
class LayerPlan:
    """The shared random draws of one stage-2 layer (identical for every candidate)."""

    layer: int
    prefix: list[str]
    finetune_suffixes: list[list[str]]
    eval_suffixes: list[list[str]]
    finetune_batches: list
    bn_batches: list
    val_batches: list


def plan_layer(ctx: Context, supernet: Supernet, layer: int, prefix: Sequence[str]) -> LayerPlan:
    """Draw the fine-tune batches and suffixes and the evaluation suffixes for ``layer``."""
    cfg = ctx.cfg
    torch.manual_seed(_seed(cfg.seed, "plan", layer))  # augmentation draws replay on resume
    rng = random.Random(_seed(cfg.seed, "stage2", layer))
    n_suffix = ctx.space.num_layers - layer - 1

    def suffix() -> list[str]:
        return supernet.sample(rng, [""] * (layer + 1))[layer + 1 :] if n_suffix else []

    epoch_base = 10_000 + 100 * layer
    train_iter = _batches(ctx, "train", epoch_base)
    counter = iter(range(epoch_base + 1, epoch_base + 100))

    def restart() -> Iterator:
        return _batches(ctx, "train", next(counter))

    finetune = _take(train_iter, cfg.finetune_steps, restart)
    bn = _take(
        _batches(ctx, "train_eval", epoch_base),
        cfg.bn_batches,
        lambda: _batches(ctx, "train_eval", next(counter)),
    )
    val = list(_batches(ctx, "val", 0, shuffle=False))[: cfg.eval_batches]
    return LayerPlan(
        layer,
        list(prefix),
        [suffix() for _ in range(cfg.finetune_steps)],
        [suffix() for _ in range(cfg.suffix_samples)],
        finetune,
        bn,
        val,
    )


class PrefixFeatures:
    """Inputs of layer ``l`` for the plan's batches, through the frozen prefix.

    Fine-tune and BN-recalibration batches pass the prefix in train mode (batch statistics,
    as in training); validation batches in eval mode after the prefix's BN is recalibrated.
    With ``cache`` they are computed once and shared by every candidate of the layer.
    """

    def __init__(self, ctx: Context, supernet: Supernet, plan: LayerPlan, cache: bool) -> None:
        self.ctx, self.supernet, self.plan = ctx, supernet, plan
        prefix_modules = nn.ModuleList(
            [supernet.stem] + [supernet.layers[i][c] for i, c in enumerate(plan.prefix)]
        )
        # The prefix is frozen for this layer: recalibrate its BN once, here.
        recalibrate_bn(
            prefix_modules,
            plan.bn_batches,
            forward=lambda x: supernet.features(ctx.to_device(x), plan.prefix),
        )
        self.prefix_modules = prefix_modules
        self.cached: dict[str, list] | None = None
        if cache:
            self.cached = {kind: list(self._compute(kind)) for kind in ("finetune", "bn", "val")}

    @torch.no_grad()
    def _compute(self, kind: str) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        batches = {
            "finetune": self.plan.finetune_batches,
            "bn": self.plan.bn_batches,
            "val": self.plan.val_batches,
        }[kind]
        self.prefix_modules.train(kind != "val")
        saved = [
            (m, m.momentum)
            for m in self.prefix_modules.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm)
        ]
        for m, _ in saved:
            m.momentum = 0.0  # train-mode BN without touching the recalibrated statistics
        try:
            for x, y in batches:
                with self.ctx.autocast():
                    feats = self.supernet.features(self.ctx.to_device(x), self.plan.prefix)
                yield feats, y.to(self.ctx.device)
        finally:
            for m, momentum in saved:
                m.momentum = momentum

    def get(self, kind: str) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return iter(self.cached[kind]) if self.cached is not None else self._compute(kind)

    @staticmethod
    def estimate_mb(ctx: Context, plan: LayerPlan) -> float:
        spec = ctx.space.layers[plan.layer]
        per_example = spec.in_channels * spec.in_size * spec.in_size * 4
        n = sum(len(b[1]) for b in plan.finetune_batches + plan.bn_batches + plan.val_batches)
        return per_example * n / 2**20


def _trainable(supernet: Supernet, layer: int, candidate: str) -> list[nn.Module]:
    """Modules a layer-``layer`` fine-tune may change: the candidate, the suffix, the head."""
    return [supernet.layers[layer][candidate], *supernet.layers[layer + 1 :], supernet.head]


def finetune_and_score(
    ctx: Context,
    supernet: Supernet,
    plan: LayerPlan,
    candidate: str,
    features: PrefixFeatures,
    progress: Callable[[], None] | None = None,
) -> float:
    """Fine-tune ``candidate`` at ``plan.layer`` in place and return its table entry.

    The entry is the validation accuracy averaged over the plan's shared suffixes, each
    evaluated after BatchNorm recalibration of the path (prefix already recalibrated).
    """
    cfg, layer = ctx.cfg, plan.layer
    torch.manual_seed(_seed(cfg.seed, "finetune", layer, candidate))
    modules = nn.ModuleList(_trainable(supernet, layer, candidate))
    params = [p for p in modules.parameters()]
    optimizer = _make_optimizer(params, cfg, cfg.finetune_lr)
    modules.train()
    steps = len(plan.finetune_suffixes)
    for step, ((feats, y), suffix) in enumerate(
        zip(features.get("finetune"), plan.finetune_suffixes, strict=True)
    ):
        ctx.check_stop()
        for group in optimizer.param_groups:  # cosine over the short fine-tune
            group["lr"] = 0.5 * cfg.finetune_lr * (1 + math.cos(math.pi * step / steps))
        train_step(ctx, supernet.forward_layers, optimizer, feats, y, [candidate, *suffix], layer)
        if progress:
            progress()
    if ctx.cfg.reuse_prefix_features:
        return _score_reusing_candidate_outputs(ctx, supernet, plan, candidate, features)
    accuracies = []
    for suffix in plan.eval_suffixes:
        path = [candidate, *suffix]
        path_modules = nn.ModuleList(
            [supernet.layers[layer + i][c] for i, c in enumerate(path)] + [supernet.head]
        )
        recalibrate_bn(
            path_modules,
            [(f, y) for f, y in features.get("bn")],
            forward=lambda f, path=path: supernet.forward_layers(f, path, layer),
        )
        path_modules.eval()
        with ctx.autocast():
            result = evaluate(
                lambda f, path=path: supernet.forward_layers(f, path, layer),
                features.get("val"),
                ctx.device,
                topk=(1,),
            )
        accuracies.append(result["top1"])
    return sum(accuracies) / len(accuracies)


@torch.no_grad()
def _score_reusing_candidate_outputs(
    ctx: Context, supernet: Supernet, plan: LayerPlan, candidate: str, features: PrefixFeatures
) -> float:
    """The evaluation part of :func:`finetune_and_score`, with the candidate run once.

    After the fine-tune, the candidate is frozen like the prefix, and its BatchNorm statistics
    depend only on what is upstream, not on the suffix: so it is recalibrated once and its
    outputs (train mode on the recalibration batches, eval mode on the validation batches)
    are shared by every evaluation suffix. Each suffix then recalibrates only its own blocks
    and the head. The result is the same, bit for bit, as running whole paths.
    """
    layer = plan.layer
    block = supernet.layers[layer][candidate]
    bn_out: list[tuple[torch.Tensor, None]] = []
    recalibrate_bn(
        block, list(features.get("bn")), forward=lambda f: bn_out.append((block(f), None))
    )
    block.eval()
    with ctx.autocast():
        val_out = [(block(f), y) for f, y in features.get("val")]
    accuracies = []
    for suffix in plan.eval_suffixes:
        modules = nn.ModuleList(
            [supernet.layers[layer + 1 + i][c] for i, c in enumerate(suffix)] + [supernet.head]
        )

        def forward(f: torch.Tensor, suffix: list[str] = suffix) -> torch.Tensor:
            return supernet.forward_layers(f, suffix, layer + 1)

        recalibrate_bn(modules, bn_out, forward=forward)
        modules.eval()
        with ctx.autocast():
            result = evaluate(forward, val_out, ctx.device, topk=(1,))
        accuracies.append(result["top1"])
    return sum(accuracies) / len(accuracies)


def _snapshot(modules: Sequence[nn.Module]) -> list[dict[str, torch.Tensor]]:
    return [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in modules]


def _restore(modules: Sequence[nn.Module], snapshot: list[dict[str, torch.Tensor]]) -> None:
    for m, state in zip(modules, snapshot, strict=True):
        m.load_state_dict(state)


def search_layer(
    ctx: Context, supernet: Supernet, layer: int, prefix: Sequence[str]
) -> tuple[list[float | None], str]:
    """Stage 2 for one layer: every allowed candidate from the same weights -> row, best.

    Leaves ``supernet`` holding the best candidate's fine-tuned weights.
    """
    space = ctx.space
    plan = plan_layer(ctx, supernet, layer, prefix)
    cache = ctx.cfg.reuse_prefix_features and (
        PrefixFeatures.estimate_mb(ctx, plan) <= ctx.cfg.feature_cache_mb
    )
    features = PrefixFeatures(ctx, supernet, plan, cache=cache)
    candidates = space.allowed_candidates(layer)
    # Everything a candidate's fine-tune may touch, snapshotted once: each candidate starts
    # from these weights; the best candidate's result is carried on.
    # (one flat list of tensors, copied in place: a state_dict round trip per candidate costs
    # more than a short fine-tune on the deep layers)
    touched = _tensors([*supernet.layers[layer:], supernet.head])
    start = [t.detach().clone() for t in touched]
    row: list[float | None] = [None] * len(space.candidates)
    best_state = None
    for cand in candidates:
        _copy(touched, start)
        acc = finetune_and_score(ctx, supernet, plan, cand, features)
        row[space.candidates.index(cand)] = acc
        ctx.callback.candidate_done(layer, cand, acc)
        if choose_best(space, layer, row) == cand:
            best_state = [t.detach().clone() for t in touched]
    assert best_state is not None
    _copy(touched, best_state)
    return row, choose_best(space, layer, row)


def _tensors(modules: Sequence[nn.Module]) -> list[torch.Tensor]:
    """Every parameter and buffer of ``modules``, in a fixed order."""
    return [t for m in modules for t in itertools.chain(m.parameters(), m.buffers())]


@torch.no_grad()
def _copy(dst: list[torch.Tensor], src: list[torch.Tensor]) -> None:
    torch._foreach_copy_(dst, src)


def choose_best(space: SearchSpace, layer: int, row: Sequence[float | None]) -> str:
    """The best candidate of a row; ties go to the cheaper block (MACs), then the first."""
    from ponas.cost import candidate_cost

    scored = [
        (acc, -candidate_cost(space, layer, c).macs, -j, c)
        for j, (c, acc) in enumerate(zip(space.candidates, row, strict=True))
        if acc is not None
    ]
    return max(scored)[3]


def evaluate_candidate(
    checkpoint: str | Path | dict[str, Any],
    layer: int,
    candidate: str,
    out: str | Path | None = None,
    callback: SearchCallback | None = None,
    weights_out: str | Path | None = None,
) -> float:
    """Score one (layer, candidate) pair on its own, from a stage checkpoint.

    This is what a worker runs when a layer's candidates are fanned out over several
    machines: ``checkpoint`` is the stage-1 checkpoint (layer 0) or the previous layer's
    stage-2 checkpoint. The draws are the same as in :func:`run_search`, so the entry equals
    the sequential one. ``weights_out`` saves the fine-tuned weights of the touched modules so
    that the layer's winner can be carried on (:func:`finish_layer`).
    """
    ckpt = load_checkpoint(checkpoint) if not isinstance(checkpoint, dict) else checkpoint
    space = SearchSpace.from_dict(ckpt["space"])
    config = ckpt["config"]
    ctx = make_context(space, config, out or Path(str(checkpoint)).parent.parent, callback)
    prefix = ckpt.get("path", [])
    if len(prefix) != layer:
        raise ValueError(
            f"checkpoint holds a prefix of {len(prefix)} layers; it can score layer {len(prefix)},"
            f" not {layer}"
        )
    if not space.allowed(layer, candidate):
        raise ValueError(
            f"{candidate!r} is not allowed at layer {layer} of the {space.name!r} space"
        )
    supernet = ctx.prepare(Supernet(space))
    supernet.load_state_dict(ckpt["model"])
    plan = plan_layer(ctx, supernet, layer, prefix)
    features = PrefixFeatures(ctx, supernet, plan, cache=False)
    acc = finetune_and_score(ctx, supernet, plan, candidate, features)
    if weights_out is not None:
        touched = [*supernet.layers[layer:], supernet.head]
        state = {
            "layer": layer,
            "candidate": candidate,
            "accuracy": acc,
            "modules": _snapshot(touched),
        }
        atomic_write(weights_out, lambda tmp: torch.save(state, tmp))
    return acc


# ---- the whole search -------------------------------------------------------------------------


def _latest(ctx: Context, name: str) -> dict[str, Any] | None:
    path = ctx.ckpt_dir / name
    return load_checkpoint(path) if path.exists() else None


def save_supernet(path: str | Path, supernet: Supernet, chosen: Sequence[str], meta: dict) -> Path:
    """``supernet.pt``: the weights every deployment inherits from, with its space."""
    payload = {
        "format": SUPERNET_FORMAT,
        "space": supernet.space.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in supernet.state_dict().items()},
        "path": list(chosen),
        "meta": meta,
    }
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_supernet(path: str | Path) -> Supernet:
    """The supernet saved by a search, on the CPU."""
    obj = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(obj, dict) or obj.get("format") != SUPERNET_FORMAT:
        raise ValueError(f"{path}: not a PONAS supernet file (written by `ponas search`)")
    supernet = Supernet(SearchSpace.from_dict(obj["space"]))
    supernet.load_state_dict(obj["state_dict"])
    return supernet


def _run_stage1(ctx: Context, overrides: dict[str, Any], resume: bool) -> dict[str, Any]:
    """Stage 1 to its last epoch (continuing a checkpoint when resuming); its checkpoint."""
    ckpt = _latest(ctx, "stage1.pt") if resume else None
    if ckpt is not None and ckpt["epoch"] + 1 >= ctx.cfg.epochs:
        return ckpt
    if ctx.cfg.ngpu > 1:
        world = ctx.cfg.ngpu if not ctx.cuda else min(ctx.cfg.ngpu, torch.cuda.device_count())
        run_stage1_ddp(ctx, {**overrides, "device": ctx.device.type}, world)
    else:
        torch.manual_seed(_seed(ctx.cfg.seed, "init"))
        stage1(ctx, ctx.prepare(Supernet(ctx.space)), ckpt)
    return load_checkpoint(ctx.ckpt_dir / "stage1.pt")


def _reporting_failures(ctx: Context, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Cancelled:
        raise
    except Exception as exc:
        ctx.callback.failed(f"{type(exc).__name__}: {exc}")
        raise


def run_stage1(
    space: SearchSpace | str,
    overrides: dict[str, Any] | None = None,
    out: str | Path = "runs/search",
    callback: SearchCallback | None = None,
    resume: bool = False,
) -> Path:
    """Stage 1 alone (for workers that fan stage 2 out); returns its checkpoint's path."""
    overrides = dict(overrides or {})
    ctx = make_context(space, overrides, out, callback)
    _reporting_failures(ctx, lambda: _run_stage1(ctx, overrides, resume))
    return ctx.ckpt_dir / "stage1.pt"


def run_search(
    space: SearchSpace | str,
    overrides: dict[str, Any] | None = None,
    out: str | Path = "runs/search",
    callback: SearchCallback | None = None,
    resume: bool = False,
):
    """Both stages end to end; writes ``table.json``, ``supernet.pt`` and checkpoints.

    Returns the :class:`ponas.table.AccuracyTable`. With ``resume``, continues from the last
    checkpoint in ``out/checkpoints``. Raises :class:`Cancelled` when the callback asks to stop.
    """
    overrides = dict(overrides or {})
    ctx = make_context(space, overrides, out, callback)
    ctx.out.mkdir(parents=True, exist_ok=True)

    def both_stages():
        ckpt = _latest(ctx, "stage2.pt") if resume else None
        if ckpt is None:
            ckpt = _run_stage1(ctx, overrides, resume)
        supernet = ctx.prepare(Supernet(ctx.space))
        supernet.load_state_dict(ckpt["model"])
        path, rows = list(ckpt.get("path", [])), list(ckpt.get("rows", []))
        n = ctx.space.num_layers
        # stage 2 progress counts (layer, candidate) fine-tunes
        ctx.callback.stage_started(
            "stage2", sum(len(ctx.space.allowed_candidates(i)) for i in range(n))
        )
        for layer in range(len(path), n):
            ctx.check_stop()
            row, best = search_layer(ctx, supernet, layer, path)
            rows.append(row)
            path.append(best)
            ctx.callback.row_done(layer, row, best)
            _save_checkpoint(ctx, "stage2.pt", _stage2_payload(layer, supernet, path, rows))
        table = finalize(ctx.out)
        ctx.callback.done(table)
        return table

    return _reporting_failures(ctx, both_stages)


def _stage2_payload(layer: int, supernet: Supernet, path: list, rows: list) -> dict[str, Any]:
    return {
        "stage": "stage2",
        "layer": layer,
        "model": supernet.state_dict(),
        "path": path,
        "rows": rows,
        "rng": _rng_state(),
    }


def finalize(out: str | Path):
    """Write ``table.json`` and ``supernet.pt`` from the last stage-2 checkpoint in ``out``.

    Used by :func:`run_search` and by workers that fanned a search's layers out.
    """
    from ponas.table import AccuracyTable

    out = Path(out)
    ckpt = load_checkpoint(out / "checkpoints" / "stage2.pt")
    space = SearchSpace.from_dict(ckpt["space"])
    if len(ckpt["path"]) != space.num_layers:
        raise ValueError(
            f"{out}: stage 2 has finished {len(ckpt['path'])} of {space.num_layers} layers"
        )
    cfg = ckpt["config"]
    meta = {
        "dataset": cfg["dataset"],
        "seed": cfg["seed"],
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": versions(),
        "config": cfg,
    }
    table = AccuracyTable.build(space, ckpt["rows"], ckpt["path"], meta)
    supernet = Supernet(space)
    supernet.load_state_dict(ckpt["model"])
    save_supernet(out / "supernet.pt", supernet, ckpt["path"], meta)
    table.save(out / "table.json")
    return table


def finish_layer(out: str | Path, layer: int, weights: dict[str, str | Path]) -> str:
    """Close a fanned-out layer: from each candidate's saved result (written by
    :func:`evaluate_candidate` with ``weights_out``), fill the row, carry the winner's weights
    and write the stage-2 checkpoint the next layer is scored from. Returns the winner."""
    ctx_dir = Path(out) / "checkpoints"
    source = ctx_dir / ("stage1.pt" if layer == 0 else "stage2.pt")
    ckpt = load_checkpoint(source)
    space = SearchSpace.from_dict(ckpt["space"])
    path, rows = list(ckpt.get("path", [])), list(ckpt.get("rows", []))
    if len(path) != layer:
        raise ValueError(f"{source} holds {len(path)} finished layers; cannot finish layer {layer}")
    results = {c: torch.load(p, map_location="cpu", weights_only=False) for c, p in weights.items()}
    missing = set(space.allowed_candidates(layer)) - set(results)
    if missing:
        raise ValueError(f"layer {layer}: no result for candidates {sorted(missing)}")
    row: list[float | None] = [
        results[c]["accuracy"] if c in results else None for c in space.candidates
    ]
    best = choose_best(space, layer, row)
    supernet = Supernet(space)
    supernet.load_state_dict(ckpt["model"])
    _restore([*supernet.layers[layer:], supernet.head], results[best]["modules"])
    ctx = Context(
        space, SearchConfig.from_dict(ckpt["config"]), None, torch.device("cpu"), Path(out)
    )  # type: ignore[arg-type]
    _save_checkpoint(
        ctx, "stage2.pt", _stage2_payload(layer, supernet, [*path, best], [*rows, row])
    )
    return best
