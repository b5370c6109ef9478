"""Checkpoint bundles: one ``.pt`` file that rebuilds and runs a network with no other file.

A bundle holds ``{"format": "ponas-bundle/1", "state_dict", "choices", "space" (full spec),
"preprocessing": {"input_size", "mean", "std"}, "metrics", "cost", "versions"}``, plus any
extra keys the writer adds (``export_all`` adds ``predicted_score`` and ``budgets``).
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import torch

from ponas.files import atomic_write
from ponas.network.model import Network
from ponas.space import SearchSpace
from ponas.tensor_files import load_file

BUNDLE_FORMAT = "ponas-bundle/1"


class BundleError(ValueError):
    """A file is not a loadable PONAS bundle."""


def versions() -> dict[str, str]:
    """Library versions recorded in tables and bundles."""
    import torchvision

    from ponas import __version__

    return {
        "ponas": __version__,
        "torch": str(torch.__version__),
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
    }


def save_bundle(
    path: str | Path,
    model: Network,
    metrics: dict[str, Any] | None = None,
    cost: dict[str, float] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a self-contained checkpoint bundle for ``model``."""
    space = model.space
    bundle = {
        "format": BUNDLE_FORMAT,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "choices": list(model.choices),
        "space": space.to_dict(),
        "preprocessing": {
            "input_size": space.input_size,
            "mean": list(space.mean),
            "std": list(space.std),
        },
        "metrics": dict(metrics or {}),
        "cost": dict(cost or {}),
        "versions": versions(),
        **(extra or {}),
    }
    return atomic_write(path, lambda tmp: torch.save(bundle, tmp))


def is_bundle(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("format") == BUNDLE_FORMAT


def read_bundle(path: str | Path) -> dict[str, Any]:
    """Load a bundle's contents onto the CPU, whatever device it was saved from."""
    path = Path(path)
    obj = load_file(path, BundleError, " (expected a PONAS checkpoint bundle .pt)")
    if not is_bundle(obj):
        raise BundleError(
            f"{path}: not a PONAS bundle (expected a dict with format {BUNDLE_FORMAT!r}; "
            "plain weights go with --model PONASA|PONASB|PONASC and --pretrain)"
        )
    return obj


def load_bundle(path: str | Path) -> tuple[Network, dict[str, Any]]:
    """Rebuild the network of a bundle with its weights; returns ``(model, bundle)``."""
    bundle = read_bundle(path)
    model = Network(SearchSpace.from_dict(bundle["space"]), bundle["choices"])
    model.load_state_dict(bundle["state_dict"])
    return model.eval(), bundle
