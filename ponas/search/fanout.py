"""The worker protocol of a fanned-out stage 2: score one (layer, candidate) from a
checkpoint, then close the layer from every candidate's saved result."""

from __future__ import annotations

import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ponas.files import atomic_write
from ponas.search.callbacks import SearchCallback
from ponas.search.checkpoint import load_checkpoint, save_checkpoint, stage2_state
from ponas.search.config import SearchConfig
from ponas.search.context import Context, make_context
from ponas.search.stage2 import (
    LayerPlan,
    PrefixFeatures,
    _copy,
    _tensors,
    choose_best,
    finetune_and_score,
    plan_layer,
)
from ponas.space import SearchSpace
from ponas.supernet import Supernet
from ponas.tensor_files import load_file


@dataclass
class _LoadedLayer:
    """What scoring a layer's candidates needs, loaded once: the checkpoint's supernet on
    the device, the data, the layer's plan and prefix features, and the weights every
    candidate starts from (as :func:`ponas.search.stage2.search_layer` keeps them)."""

    key: Hashable
    ctx: Context
    supernet: Supernet
    plan: LayerPlan
    features: PrefixFeatures
    touched: list[torch.Tensor]
    start: list[torch.Tensor]


# One layer kept per process (a worker scores one candidate at a time).
_kept: _LoadedLayer | None = None


def _load_layer(
    checkpoint: str | Path | dict[str, Any],
    layer: int,
    out: str | Path | None,
    key: Hashable,
) -> _LoadedLayer:
    ckpt = load_checkpoint(checkpoint) if not isinstance(checkpoint, dict) else checkpoint
    space = SearchSpace.from_dict(ckpt["space"])
    ctx = make_context(space, ckpt["config"], out or Path(str(checkpoint)).parent.parent)
    prefix = ckpt.get("path", [])
    if len(prefix) != layer:
        raise ValueError(
            f"checkpoint holds a prefix of {len(prefix)} layers; it can score layer {len(prefix)},"
            f" not {layer}"
        )
    supernet = ctx.prepare(Supernet(space))
    supernet.load_state_dict(ckpt["model"])
    plan = plan_layer(ctx, supernet, layer, prefix)
    # A kept layer serves several candidates, so caching pays (within feature_cache_mb, as in
    # search_layer); one candidate alone reads each batch once, where caching would not.
    features = PrefixFeatures(
        ctx, supernet, plan, cache_mb=ctx.cfg.feature_cache_mb if key is not None else 0
    )
    touched = _tensors([*supernet.layers[layer:], supernet.head])
    start = [t.detach().clone() for t in touched] if key is not None else []
    return _LoadedLayer(key, ctx, supernet, plan, features, touched, start)


def evaluate_candidate(
    checkpoint: str | Path | dict[str, Any],
    layer: int,
    candidate: str,
    out: str | Path | None = None,
    callback: SearchCallback | None = None,
    weights_out: str | Path | None = None,
    keep: Hashable | None = None,
    timings: dict[str, Any] | None = None,
) -> float:
    """Score one (layer, candidate) pair on its own, from a stage checkpoint.

    This is what a worker runs when a layer's candidates are fanned out over several
    machines: ``checkpoint`` is the stage-1 checkpoint (layer 0) or the previous layer's
    stage-2 checkpoint. The draws are the same as in :func:`run_search`, so the entry equals
    the sequential one. ``weights_out`` saves the fine-tuned weights of the touched modules so
    that the layer's winner can be carried on (:func:`finish_layer`).

    ``keep``: a key (e.g. the run, its attempt and the layer) under which this process keeps
    what it loaded (checkpoint, data, the layer's prefix features) for the next candidate with
    the same key and checkpoint file: per-candidate overhead shrinks to restoring the weights
    the candidates start from. ``timings`` receives ``compute`` (seconds of fine-tuning and
    scoring) and ``reused`` (whether the kept layer served).
    """
    global _kept
    if isinstance(checkpoint, dict):
        key = None
    else:
        stat = Path(checkpoint).stat()  # a rewritten checkpoint is a different layer
        key = None if keep is None else (keep, str(checkpoint), stat.st_mtime_ns, stat.st_size)
    reused = key is not None and _kept is not None and _kept.key == key
    if not reused:
        _kept = None  # free the previous layer first
        loaded = _load_layer(checkpoint, layer, out, key)
        if key is not None:
            _kept = loaded
    else:
        loaded = _kept
        _copy(loaded.touched, loaded.start)  # every candidate starts from the same weights
    ctx, supernet = loaded.ctx, loaded.supernet
    if loaded.plan.layer != layer:
        raise ValueError(f"the kept checkpoint scores layer {loaded.plan.layer}, not {layer}")
    if not ctx.space.allowed(layer, candidate):
        raise ValueError(
            f"{candidate!r} is not allowed at layer {layer} of the {ctx.space.name!r} space"
        )
    ctx.callback = callback or SearchCallback()
    began = time.perf_counter()
    acc, stderr = finetune_and_score(ctx, supernet, loaded.plan, candidate, loaded.features)
    if timings is not None:
        timings.update(compute=time.perf_counter() - began, reused=reused)
    if weights_out is not None:
        touched = [*supernet.layers[layer:], supernet.head]
        state = {
            "layer": layer,
            "candidate": candidate,
            "accuracy": acc,
            "stderr": stderr,
            "validation": loaded.plan.validation,
            "modules": [
                {k: v.detach().clone() for k, v in m.state_dict().items()} for m in touched
            ],
        }
        atomic_write(weights_out, lambda tmp: torch.save(state, tmp))
    return CandidateScore(acc, stderr)


class CandidateScore(float):
    """A table entry as :func:`evaluate_candidate` returns it: the accuracy (a float, as
    before) that also carries its standard error over the evaluation suffixes."""

    stderr: float | None

    def __new__(cls, accuracy: float, stderr: float | None) -> CandidateScore:
        score = super().__new__(cls, accuracy)
        score.stderr = stderr
        return score


def finish_layer(out: str | Path, layer: int, weights: dict[str, str | Path]) -> str:
    """Close a fanned-out layer: from each candidate's saved result (written by
    :func:`evaluate_candidate` with ``weights_out``), fill the row, carry the winner's weights
    and write the stage-2 checkpoint the next layer is scored from. Returns the winner."""
    source = Path(out) / "checkpoints" / ("stage1.pt" if layer == 0 else "stage2.pt")
    ckpt = load_checkpoint(source)
    space = SearchSpace.from_dict(ckpt["space"])
    path, rows = list(ckpt.get("path", [])), list(ckpt.get("rows", []))
    stderr = list(ckpt.get("stderr", [[None] * len(r) for r in rows]))
    if len(path) != layer:
        raise ValueError(f"{source} holds {len(path)} finished layers; cannot finish layer {layer}")
    results = {c: load_file(p) for c, p in weights.items()}
    missing = set(space.allowed_candidates(layer)) - set(results)
    if missing:
        raise ValueError(f"layer {layer}: no result for candidates {sorted(missing)}")
    row: list[float | None] = [
        results[c]["accuracy"] if c in results else None for c in space.candidates
    ]
    errors = [results[c].get("stderr") if c in results else None for c in space.candidates]
    best = choose_best(space, layer, row)
    supernet = Supernet(space)
    supernet.load_state_dict(ckpt["model"])
    _restore([*supernet.layers[layer:], supernet.head], results[best]["modules"])
    cfg = SearchConfig.from_dict(ckpt["config"])
    validation = results[best].get("validation", {})
    state = stage2_state(
        layer, supernet, [*path, best], [*rows, row], [*stderr, errors], validation
    )
    save_checkpoint(out, space, cfg, "stage2.pt", state)
    return best


def _restore(modules: Sequence[nn.Module], snapshot: list[dict[str, torch.Tensor]]) -> None:
    for m, state in zip(modules, snapshot, strict=True):
        m.load_state_dict(state)
