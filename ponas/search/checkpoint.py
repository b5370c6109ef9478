"""Save and load a search's files: stage checkpoints (``out/checkpoints/*.pt``), ``supernet.pt``.

A checkpoint carries its space and config, so a worker (or a resumed search) can rebuild
everything from the file alone.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ponas.files import atomic_write
from ponas.search.config import SearchConfig
from ponas.space import SearchSpace
from ponas.supernet import Supernet
from ponas.tensor_files import load_file

CHECKPOINT_FORMAT = "ponas-checkpoint/1"
SUPERNET_FORMAT = "ponas-supernet/1"


def checkpoint_dir(out: str | Path) -> Path:
    return Path(out) / "checkpoints"


def save_checkpoint(
    out: str | Path, space: SearchSpace, cfg: SearchConfig, name: str, payload: dict[str, Any]
) -> Path:
    """Write ``out/checkpoints/name`` atomically: the payload with its space and config."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "space": space.to_dict(),
        "config": cfg.to_dict(),
        **payload,
    }
    return atomic_write(checkpoint_dir(out) / name, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A search checkpoint (stage 1 epoch or stage 2 layer), loaded onto the CPU."""
    obj = load_file(path)
    if not isinstance(obj, dict) or obj.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a PONAS search checkpoint")
    return obj


def latest_checkpoint(out: str | Path, name: str) -> dict[str, Any] | None:
    """``out/checkpoints/name`` if it exists."""
    path = checkpoint_dir(out) / name
    return load_checkpoint(path) if path.exists() else None


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def stage2_state(
    layer: int,
    supernet: Supernet,
    path: list,
    rows: list,
    stderr: list | None = None,
    validation: dict | None = None,
) -> dict[str, Any]:
    """The payload of ``stage2.pt`` once ``layer`` is finished: the rows so far, with their
    standard errors (``stderr``) and how the validation subset was drawn (``validation``)."""
    return {
        "stage": "stage2",
        "layer": layer,
        "model": supernet.state_dict(),
        "path": path,
        "rows": rows,
        "stderr": stderr if stderr is not None else [[None] * len(r) for r in rows],
        "validation": validation or {},
        "rng": rng_state(),
    }


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
    obj = load_file(path)
    if not isinstance(obj, dict) or obj.get("format") != SUPERNET_FORMAT:
        raise ValueError(f"{path}: not a PONAS supernet file (written by `ponas search`)")
    supernet = Supernet(SearchSpace.from_dict(obj["space"]))
    supernet.load_state_dict(obj["state_dict"])
    return supernet
