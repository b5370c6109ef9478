"""Reading back the tensor files ponas saved (checkpoints, supernets, bundles, candidate
results): ``torch.load`` of tensors and plain data only. Apart from :mod:`ponas.files` so that
the torch-free column (tables, solver, costs) and the web app never import torch."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch


def load_file(path: str | Path, error: type[ValueError] = ValueError, expected: str = "") -> Any:
    """``torch.load`` of tensors and plain data onto the CPU, whatever device saved them.

    Only tensors and plain Python values are unpickled (``weights_only=True``): checkpoints,
    supernets and candidate results live in a store several workers share, and a file planted
    there must not run code on the worker that reads it. A missing, unreadable or refused file
    raises ``error`` with one line that starts with its path (``expected`` follows "no such
    file").
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: no such file{expected}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise error(
            f"{path}: refused: it holds Python objects other than tensors and plain data, "
            "which could run code when loaded; only files written by ponas are read"
        ) from None
    except Exception as exc:  # torch raises many types for a corrupt or foreign file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise error(f"{path}: not a readable PyTorch checkpoint ({first})") from None
