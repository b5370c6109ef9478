"""Checkpoint bundles, TorchScript, ONNX and model cards for a specialized network.

A bundle (``.pt``) holds everything needed to rebuild and run the network with no other
file: ``{"format": "ponas-bundle/1", "state_dict", "choices", "space" (full spec),
"preprocessing": {"input_size", "mean", "std"}, "metrics", "cost", "versions"}``.
"""

from __future__ import annotations

import os
import platform
import tempfile
from pathlib import Path
from typing import Any

import torch

from ponas.network import Network
from ponas.space import SearchSpace

BUNDLE_FORMAT = "ponas-bundle/1"


class BundleError(ValueError):
    """A file is not a loadable PONAS bundle."""


def versions() -> dict[str, str]:
    """Library versions recorded in tables and bundles."""
    import torchvision

    from ponas import __version__

    return {
        "ponas": __version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
    }


def atomic_write(path: str | Path, write) -> Path:
    """Call ``write(tmp_path)`` then move the result into place: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


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
    if not path.is_file():
        raise BundleError(f"{path}: no such file (expected a PONAS checkpoint bundle .pt)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt or foreign file
        raise BundleError(f"{path}: not a readable PyTorch checkpoint ({exc})") from None
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
