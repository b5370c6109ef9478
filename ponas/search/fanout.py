"""The worker protocol of a fanned-out stage 2: score one (layer, candidate) from a
checkpoint, then close the layer from every candidate's saved result."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ponas.files import atomic_write, load_file
from ponas.search.callbacks import SearchCallback
from ponas.search.checkpoint import load_checkpoint, save_checkpoint, stage2_state
from ponas.search.config import SearchConfig
from ponas.search.context import make_context
from ponas.search.stage2 import PrefixFeatures, choose_best, finetune_and_score, plan_layer
from ponas.space import SearchSpace
from ponas.supernet import Supernet


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
    ctx = make_context(space, ckpt["config"], out or Path(str(checkpoint)).parent.parent, callback)
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
    # One candidate reads each batch once: caching its features would not pay.
    features = PrefixFeatures(ctx, supernet, plan, cache_mb=0)
    acc, stderr = finetune_and_score(ctx, supernet, plan, candidate, features)
    if weights_out is not None:
        touched = [*supernet.layers[layer:], supernet.head]
        state = {
            "layer": layer,
            "candidate": candidate,
            "accuracy": acc,
            "stderr": stderr,
            "validation": plan.validation,
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
