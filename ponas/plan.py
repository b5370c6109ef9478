"""What a search will cost before it runs: per stage the steps, the images decoded, the peak
host and device memory, and (given a measured training images/s) the GPU-hours.

The figures are estimates computed from the settings and the space alone (nothing is trained
or decoded): the step and image counts are exact for the code as written; memory is a model
(weights, optimizer state, the activations a training step keeps for the widest candidate of
every layer, loader prefetch, the stage-2 feature cache), good to a small factor; time assumes
every image costs what a stage-1 training image costs, scaled by the part of the network it
passes (a stage-2 fine-tune trains only layer ``l`` onwards) and by a third for forward-only
passes (BatchNorm recalibration, evaluation, prefix features).
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ponas.catalog import DIGITS_TEST_FRACTION, PREFETCH_BATCHES, SHAPES_TRAIN, val_count
from ponas.search.config import SearchConfig, resolve
from ponas.space import Candidate, SearchSpace

#: The paper's search cost on ImageNet (Huang & Chu, arXiv 2003.05112).
PAPER_GPU_HOURS = 210
#: ImageNet-1k's training images: the imagenet preset's data set when no folder is given.
IMAGENET_TRAIN_IMAGES = 1_281_167
#: What a Python process holding torch (and the data set's file list) takes before any batch.
PROCESS_BASE_BYTES = 600 * 2**20
#: A forward pass costs about a third of a training step (forward + backward).
FORWARD_SHARE = 1 / 3
#: The most memory one accelerator holds today (NVIDIA B200: 192 GB): a plan beyond it warns.
LARGEST_DEVICE_BYTES = 192 * 2**30
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp"}


@dataclass
class StageEstimate:
    """One stage: optimizer steps, images decoded, peak memory (bytes), and training-image
    equivalents (what the GPU-hours are computed from)."""

    name: str
    steps: int
    images_decoded: int
    peak_host_bytes: int
    peak_device_bytes: int
    train_images: float


@dataclass
class Plan:
    """The estimate of one search; :meth:`text` prints it, :meth:`to_dict` serves it."""

    space: str
    dataset: str
    train_images: int
    val_images: int
    scored_images: int
    device: str
    stages: list[StageEstimate]
    notes: list[str] = field(default_factory=list)
    images_per_s: float | None = None

    @property
    def gpu_hours(self) -> float | None:
        if not self.images_per_s:
            return None
        return sum(s.train_images for s in self.stages) / self.images_per_s / 3600

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["gpu_hours"] = self.gpu_hours
        d["paper_gpu_hours"] = PAPER_GPU_HOURS
        return d

    def text(self) -> str:
        """The estimate as a small table, with the GPU-hours against the paper's."""
        lines = [
            f"search plan: space {self.space}, {self.dataset} data ({self.train_images:,} "
            f"training images, {self.val_images:,} held out, {self.scored_images:,} of them "
            f"score each table entry), device {self.device}",
            f"{'stage':<8} {'steps':>12} {'images decoded':>16} {'peak host':>11} "
            f"{'peak device':>12}",
        ]
        for s in self.stages:
            lines.append(
                f"{s.name:<8} {s.steps:>12,} {s.images_decoded:>16,} "
                f"{gib(s.peak_host_bytes):>11} {gib(s.peak_device_bytes):>12}"
            )
        if self.gpu_hours is None:
            lines.append(
                "GPU-hours: give --images-per-s (stage-1 training images/s on the target card, "
                "measured by bench/stage1_throughput.py)"
            )
        else:
            per_stage = ", ".join(
                f"{s.name} {s.train_images / self.images_per_s / 3600:,.1f}" for s in self.stages
            )
            lines.append(
                f"GPU-hours at {self.images_per_s:,.0f} images/s: {self.gpu_hours:,.1f} "
                f"({per_stage}); the paper reports about {PAPER_GPU_HOURS} for its ImageNet search"
            )
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def estimate(
    space: SearchSpace | str,
    overrides: dict[str, Any] | None = None,
    *,
    train_images: int | None = None,
    images_per_s: float | None = None,
    device: str | None = None,
) -> Plan:
    """The plan of a search with these settings (see the module docstring for the model).

    ``train_images``: the training data set's size before the validation split is held out;
    by default counted (digits, CIFAR-10, an image folder's ``train/``) or, for an image
    folder that is not there, ImageNet-1k's. ``device``: ``"cuda"`` or ``"cpu"`` (by default
    the one the settings ask for, CUDA for ``auto``).
    """
    space, cfg = resolve(space, overrides)
    notes: list[str] = []
    total = train_images or _dataset_size(cfg, notes)
    n_val = val_count(cfg.val_size if cfg.val_size < 1 else int(cfg.val_size), total, "plan")
    n_train = total - n_val
    scored = min(n_val, cfg.eval_batches * cfg.batch_size)
    cuda = (device or ("cpu" if cfg.device == "cpu" else "cuda")) == "cuda"
    if device is None and cfg.device == "auto":
        notes.append("device auto is planned as cuda; set device cpu to plan a run on the CPU")
    model = _Model(space, cfg, cuda)
    stages = [model.stage1(n_train), model.stage2(scored)]
    if n_train < cfg.batch_size:
        notes.append(f"batch_size {cfg.batch_size} is larger than the {n_train} training images")
    peak = max(s.peak_device_bytes for s in stages)
    if cuda and peak > LARGEST_DEVICE_BYTES:
        notes.append(
            f"peak device memory {gib(peak)} is more than any one GPU holds (the largest, "
            f"{gib(LARGEST_DEVICE_BYTES)}): lower batch_size or input_size"
        )
    return Plan(
        space.name,
        cfg.dataset,
        total,
        n_val,
        scored,
        "cuda" if cuda else "cpu",
        stages,
        notes,
        images_per_s,
    )


def _dataset_size(cfg: SearchConfig, notes: list[str]) -> int:
    """Training examples of the configured data set (before the validation split)."""
    if cfg.dataset == "digits":
        return 1797 - round(DIGITS_TEST_FRACTION * 1797)
    if cfg.dataset == "cifar10":
        return 50_000
    if cfg.dataset == "shapes":
        return SHAPES_TRAIN
    folder = Path(cfg.dataset_dir or "").expanduser() / "train"
    if cfg.dataset_dir and folder.is_dir():
        return _count_images(str(folder), folder.stat().st_mtime_ns)
    where = f"{folder} is not a folder" if cfg.dataset_dir else "no dataset folder given"
    notes.append(
        f"{where}: assumed ImageNet-1k's {IMAGENET_TRAIN_IMAGES:,} training images "
        "(give --train-images N, or --dataset-dir DIR holding train/)"
    )
    return IMAGENET_TRAIN_IMAGES


@functools.lru_cache(maxsize=16)
def _count_images(folder: str, mtime_ns: int) -> int:
    """Image files under ``folder`` (cached: the new-search page asks at every change)."""
    return sum(
        1
        for _, _, files in os.walk(folder)
        for f in files
        if os.path.splitext(f)[1].lower() in _IMAGE_SUFFIXES
    )


class _Model:
    """The memory and work model of one search configuration."""

    def __init__(self, space: SearchSpace, cfg: SearchConfig, cuda: bool) -> None:
        self.space, self.cfg, self.cuda = space, cfg, cuda
        self.act_bytes = 2 if cuda and cfg.amp else 4  # bf16 activations under autocast
        self.image_bytes = space.in_channels * space.input_size**2 * 4  # a decoded float image
        self.layer_params = [
            sum(_params(space, i, c) for c in space.allowed_candidates(i))
            for i in range(space.num_layers)
        ]
        self.fixed_params = _fixed_params(space)
        # the average sampled path's MACs from layer l on, over the whole path's
        # (index num_layers: the head alone)
        macs = [_mean_macs(space, i) for i in range(space.num_layers)]
        last = space.layers[-1]
        head = last.out_channels * space.head_channels * last.out_size**2
        head += space.head_channels * space.num_classes
        whole = _fixed_macs(space) + sum(macs)
        self.share_from = [(sum(macs[i:]) + head) / whole for i in range(len(macs) + 1)]

    def loader_bytes(self) -> int:
        """Decoded batches in flight: each worker's prefetch, plus the batch in use (pinned
        again on CUDA)."""
        batch = self.cfg.batch_size * self.image_bytes
        in_flight = self.cfg.num_workers * PREFETCH_BATCHES + 1 + (1 if self.cuda else 0)
        return in_flight * batch

    def activations(self, start: int) -> int:
        """Bytes a training step keeps for the backward pass, layers ``start`` on."""
        bs, total = self.cfg.batch_size, 0
        if start == 0:
            s = self.space.stem_out_size
            total += 3 * self.space.stem_channels * s * s  # conv, BN, ReLU6 outputs
            total += 6 * self.space.stem_channels * s * s  # the fixed first block
        for spec in self.space.layers[start:]:
            widest = max(
                (Candidate.parse(c) for c in self.space.allowed_candidates(spec.index)),
                key=lambda c: (c.expansion or 0, c.kernel or 0),
            )
            hidden = spec.in_channels * (widest.expansion or 1)
            total += 3 * hidden * spec.in_size**2  # expand conv, BN, activation
            total += 3 * hidden * spec.out_size**2  # depthwise conv, BN, activation (+ SE)
            total += 2 * spec.out_channels * spec.out_size**2  # project conv, BN
        last = self.space.layers[-1]
        total += 3 * self.space.head_channels * last.out_size**2
        return total * bs * self.act_bytes

    def weights(self, trained: float) -> int:
        """Weights (float32), plus gradients and momentum for the ``trained`` share."""
        params = self.fixed_params + sum(self.layer_params)
        return int(params * 4 * (1 + 2 * trained))

    def host(self, device_bytes: int) -> int:
        base = PROCESS_BASE_BYTES + self.loader_bytes()
        if self.cfg.dataset in ("digits", "cifar10"):
            base += 50_000 * 3 * 32 * 32 if self.cfg.dataset == "cifar10" else 1797 * 256 * 4
        return base + (0 if self.cuda else device_bytes)

    def stage1(self, n_train: int) -> StageEstimate:
        cfg = self.cfg
        steps = cfg.epochs * (n_train // cfg.batch_size)
        images = steps * cfg.batch_size
        device = self.weights(1.0) + self.activations(0)
        return StageEstimate("stage 1", steps, images, self.host(device), device, float(images))

    def stage2(self, scored: int) -> StageEstimate:
        cfg, space, bs = self.cfg, self.space, self.cfg.batch_size
        val_batches = min(cfg.eval_batches, math.ceil(scored / bs))
        steps = decoded = 0
        work = 0.0
        peak_device = 0
        for layer, spec in enumerate(space.layers):
            n_cand = len(space.allowed_candidates(layer))
            feats = spec.in_channels * spec.in_size**2 * 4 * bs  # one batch at layer l's input
            counts = {"val": val_batches, "bn": cfg.bn_batches, "finetune": cfg.finetune_steps}
            room = int(cfg.feature_cache_mb * 2**20 // feats) if cfg.reuse_prefix_features else 0
            cached = {}
            for kind in ("val", "bn", "finetune"):
                cached[kind] = min(room, counts[kind])
                room -= cached[kind]
            passes = cfg.bn_batches + sum(cached.values())  # prefix BN + the cache, once
            passes += n_cand * sum(counts[k] - cached[k] for k in counts)
            steps += n_cand * cfg.finetune_steps
            decoded += passes * bs
            prefix_share = 1 - self.share_from[layer]
            after = self.share_from[layer + 1]
            work += passes * bs * prefix_share * FORWARD_SHARE
            work += n_cand * cfg.finetune_steps * bs * self.share_from[layer]
            evals = cfg.suffix_samples * (cfg.bn_batches + val_batches)
            work += n_cand * evals * bs * after * FORWARD_SHARE
            cache_bytes = sum(cached.values()) * feats
            trained = sum(self.layer_params[layer:]) / max(sum(self.layer_params), 1)
            held = (cfg.bn_batches + val_batches) * feats  # one candidate's outputs, scored
            device = (
                self.weights(trained)
                + int(2 * trained * sum(self.layer_params) * 4)  # start and best snapshots
                + self.activations(layer)
                + cache_bytes
                + held
            )
            peak_device = max(peak_device, device)
        return StageEstimate("stage 2", steps, decoded, self.host(peak_device), peak_device, work)


def _params(space: SearchSpace, layer: int, candidate: str) -> int:
    from ponas.cost import candidate_cost

    return candidate_cost(space, layer, candidate).params


def _mean_macs(space: SearchSpace, layer: int) -> float:
    from ponas.cost import candidate_cost

    allowed = space.allowed_candidates(layer)
    return sum(candidate_cost(space, layer, c).macs for c in allowed) / len(allowed)


def _fixed_params(space: SearchSpace) -> int:
    from ponas.cost import base_cost

    return base_cost(space).params


def _fixed_macs(space: SearchSpace) -> int:
    from ponas.cost import base_cost

    return base_cost(space).macs
