"""Weights files for a :class:`~ponas.network.model.Network`: reading a state dict, our layout and
the reference implementation's (its published PONAS-A/B/C checkpoints), and loading either one
with a one-line error that lists the keys that do not fit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ponas.blocks import MBConv, SqueezeExcite
from ponas.network.model import Network
from ponas.tensor_files import load_file


class WeightsError(ValueError):
    """A weights file that cannot be read or does not fit the network; the message is one line
    that starts with the file's path."""


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A plain state dict (or a dict holding one under ``state_dict`` or ``model``), loaded
    onto the CPU, with the ``module.`` prefix of DataParallel removed."""
    p = Path(path)
    obj = load_file(p, WeightsError)
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict):
        raise WeightsError(f"{p}: expected a state dict, got {type(obj).__name__}")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _mismatch(own: dict[str, torch.Tensor], state: dict[str, Any]) -> str | None:
    """What keeps ``state`` from loading into a network with state dict ``own`` (None: fits)."""
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong_shape = sorted(
        k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape)
    )

    def show(keys: list[str]) -> str:
        return ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")

    parts = []
    if missing:
        parts.append(f"missing {len(missing)}: {show(missing)}")
    if unexpected:
        parts.append(f"unexpected {len(unexpected)}: {show(unexpected)}")
    if wrong_shape:
        parts.append(f"wrong shape {len(wrong_shape)}: {show(wrong_shape)}")
    return "; ".join(parts) or None


# The reference implementation's module tree, for its published PONAS-A/B/C checkpoints: the
# same function as ours under other names. Our module prefix -> the reference's.
_REFERENCE_FIXED = {
    "stem.0.0": "first.conv",
    "stem.0.1": "first.bn",
    "head.conv.0": "stages.last.0",
    "head.conv.1": "stages.last.1",
    "head.classifier": "classifier.1",  # the reference's classifier is Dropout, Linear
}
LAYOUTS = ("ponas", "reference")


def _mbconv_prefixes(ours: str, theirs: str, block: MBConv) -> dict[str, str]:
    """An MBConv's parts: expand 1x1 ``point_wise``, ``depthwise``, ``se.operation`` (its
    reduce and expand convs at 1 and 3), project 1x1 ``point_wise_1``."""
    out = {}
    convs = [j for j, m in enumerate(block.body) if isinstance(m, nn.Sequential)]
    for j, m in enumerate(block.body):
        at = f"{ours}.body.{j}"
        if isinstance(m, nn.Sequential):  # conv, BN, ReLU6: the expand conv comes first
            role = "depthwise" if j == convs[-1] else "point_wise"
            out[f"{at}.0"], out[f"{at}.1"] = f"{theirs}.{role}.conv", f"{theirs}.{role}.bn"
        elif isinstance(m, SqueezeExcite):
            out[f"{at}.reduce"] = f"{theirs}.se.operation.1"
            out[f"{at}.expand"] = f"{theirs}.se.operation.3"
        elif isinstance(m, nn.Conv2d):
            out[at] = f"{theirs}.point_wise_1.conv"
        else:
            out[at] = f"{theirs}.point_wise_1.bn"
    return out


def reference_names(model: Network) -> dict[str, str]:
    """Each of ``model``'s state dict keys -> its name in the reference's module tree
    (``first.*``, ``stages.{0..L}.block.*``, ``stages.last.*``, ``classifier.1.*``)."""
    prefixes = dict(_REFERENCE_FIXED)
    prefixes.update(_mbconv_prefixes("stem.1", "stages.0.block", model.stem[1]))
    for i, block in enumerate(model.layers):
        if isinstance(block, MBConv):  # skip has no weights
            prefixes.update(_mbconv_prefixes(f"layers.{i}", f"stages.{i + 1}.block", block))
    names = {}
    for key in model.state_dict():
        module, _, tensor = key.rpartition(".")
        names[key] = f"{prefixes[module]}.{tensor}"
    return names


def check_layout(layout: str) -> str:
    """``layout`` if it is one of :data:`LAYOUTS`, else a ValueError naming both."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown weights layout {layout!r}: expected {' or '.join(LAYOUTS)}")
    return layout


def to_layout(model: Network, layout: str) -> dict[str, torch.Tensor]:
    """``model``'s weights (on the CPU) under the names of ``layout`` (:data:`LAYOUTS`)."""
    check_layout(layout)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if layout == "ponas":
        return state
    names = reference_names(model)
    return {names[k]: v for k, v in state.items()}


def _looks_like_reference(state: dict[str, Any]) -> bool:
    return any(k.startswith(("first.", "stages.", "classifier.")) for k in state)


def load_weights(model: Network, path: str | Path) -> str:
    """Load the weights file ``path`` into ``model``, in our layout or the reference's (with or
    without DataParallel's ``module.`` prefix); returns the layout found. A mismatch is a
    :class:`WeightsError` listing the keys, not a traceback."""
    return load_state(model, read_state_dict(path), path)


def load_state(model: Network, state: dict[str, torch.Tensor], path: str | Path) -> str:
    """:func:`load_weights` for a state dict already read from ``path``."""
    own = model.state_dict()
    layout = "ponas"
    if _looks_like_reference(state):
        layout = "reference"
        own = {name: own[k] for k, name in reference_names(model).items()}
    problem = _mismatch(own, state)
    if problem:
        read_as = " (read as the reference's layout)" if layout == "reference" else ""
        raise WeightsError(f"{Path(path)} does not fit the model{read_as}: {problem}")
    if layout == "reference":
        state = {k: state[name] for k, name in reference_names(model).items()}
    model.load_state_dict(state)
    return layout
