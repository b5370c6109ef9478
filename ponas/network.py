"""Standalone networks from a list of choices, the released PONAS-A/B/C, and their weights."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ponas.blocks import Head, MBConv, SqueezeExcite, init_weights, make_block, make_stem
from ponas.files import load_file
from ponas.space import Candidate, SearchSpace, SpaceError, load_space


class Network(nn.Module):
    """One architecture of ``space``: stem, the chosen block of every layer, head.

    ``state_dict`` keys are ``stem.*``, ``layers.{l}.*``, ``head.*``: the supernet's keys with
    the candidate name removed, so weights are inherited one-to-one.
    """

    def __init__(self, space: SearchSpace, choices: Sequence[str]) -> None:
        super().__init__()
        self.space = space
        self.choices = space.validate_choices(choices)
        self.stem = make_stem(space)
        self.layers = nn.Sequential(*(make_block(space, i, c) for i, c in enumerate(self.choices)))
        self.head = Head(space)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layers(self.stem(x)))


def _rows_to_choices(rows: str) -> list[str]:
    """Turn the paper's rows ``expansion,kernel,SE,stride,channels | ...`` into candidate names."""
    names = []
    for row in rows.split("|"):
        e, k, se, _stride, _channels = (v.strip() for v in row.split(","))
        names.append(Candidate(expansion=int(e), kernel=int(k), se=se == "T").name)
    return names


# The released networks, as printed in the paper (rows: expansion, kernel, SE, stride, channels).
_RELEASED_ROWS = {
    "PONASA": "6,5,F,2,32 | 3,5,F,1,32 | 3,7,T,2,40 | 3,5,T,1,40 | 3,5,F,1,40 | 3,7,F,1,40 | "
    "6,7,T,2,80 | 3,5,T,1,80 | 3,5,T,1,80 | 3,5,T,1,80 | 3,5,F,1,96 | 3,7,F,1,96 | 3,7,F,1,96 | "
    "3,7,T,1,96 | 6,7,T,2,192 | 3,7,T,1,192 | 3,5,F,1,192 | 3,7,T,1,192 | 6,5,T,1,320",
    "PONASB": "6,3,T,2,32 | 3,7,T,1,32 | 6,5,F,2,40 | 3,5,T,1,40 | 3,5,F,1,40 | 3,5,F,1,40 | "
    "6,7,F,2,80 | 3,5,T,1,80 | 3,5,T,1,80 | 3,5,T,1,80 | 6,5,T,1,96 | 3,7,F,1,96 | 3,7,F,1,96 | "
    "3,7,T,1,96 | 6,7,T,2,192 | 3,7,T,1,192 | 3,5,F,1,192 | 3,7,F,1,192 | 6,5,T,1,320",
    "PONASC": "6,5,F,2,32 | 3,7,T,1,32 | 6,5,T,2,40 | 3,5,T,1,40 | 3,5,F,1,40 | 3,7,F,1,40 | "
    "6,7,F,2,80 | 3,5,T,1,80 | 3,7,T,1,80 | 6,5,T,1,80 | 6,5,T,1,96 | 3,7,F,1,96 | 3,7,F,1,96 | "
    "6,5,T,1,96 | 6,7,T,2,192 | 3,7,T,1,192 | 3,5,F,1,192 | 3,7,T,1,192 | 6,5,T,1,320",
}
RELEASED: dict[str, list[str]] = {
    name: _rows_to_choices(rows) for name, rows in _RELEASED_ROWS.items()
}


def released_name(name: str) -> str | None:
    """Normalize ``PONAS-A`` / ``ponasa`` / ``PONASA`` to the registry key, or None."""
    key = name.upper().replace("-", "").replace("_", "")
    return key if key in RELEASED else None


def build_released(name: str, space: SearchSpace | None = None) -> Network:
    """PONAS-A/B/C by name, in the ``imagenet`` space unless another is given."""
    key = released_name(name)
    if key is None:
        raise SpaceError(f"unknown model {name!r}: expected one of PONASA, PONASB, PONASC")
    return Network(space or load_space("imagenet"), RELEASED[key])


def load_architecture(path: str) -> Network:
    """A network from an architecture JSON file.

    Accepted forms: ``{"space": "imagenet" | {full spec}, "choices": [...]}`` or a plain list
    of candidate names (read in the ``imagenet`` space).
    """
    import json
    from pathlib import Path

    from ponas.space import SearchSpace

    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise SpaceError(f"{p}: no such architecture file") from None
    except json.JSONDecodeError as exc:
        raise SpaceError(f"{p}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if isinstance(data, list):
        data = {"space": "imagenet", "choices": data}
    if not isinstance(data, dict) or "choices" not in data:
        raise SpaceError(
            f'{p}: expected {{"space": "imagenet", "choices": ["e6_k5", ...]}} or a list of names'
        )
    space_spec = data.get("space", "imagenet")
    space = (
        SearchSpace.from_dict(space_spec)
        if isinstance(space_spec, dict)
        else load_space(space_spec)
    )
    return Network(space, data["choices"])


def resolve_model(
    spec: str, num_classes: int | None = None, input_size: int | None = None
) -> tuple[Network, dict[str, Any] | None]:
    """``PONASA|PONASB|PONASC`` (imagenet space), an architecture ``.json``, or a bundle ``.pt``.

    Returns ``(model, bundle_or_None)``. ``num_classes`` / ``input_size`` re-shape the space of
    a released model or architecture for another dataset; a bundle keeps its own.
    """
    from ponas.export import load_bundle  # export builds on this module

    if Path(spec).suffix in (".pt", ".pth"):
        return load_bundle(spec)
    key = released_name(spec)
    if key is not None:
        space, choices = load_space("imagenet"), RELEASED[key]
    elif spec.endswith(".json"):
        net = load_architecture(spec)
        space, choices = net.space, net.choices
    else:
        raise SpaceError(
            f"unknown model {spec!r}: expected PONASA, PONASB, PONASC, an architecture .json "
            "or a checkpoint bundle .pt"
        )
    overrides = {"num_classes": num_classes, "input_size": input_size}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if overrides:
        space = space.replace(**overrides)
    return Network(space, choices), None


# ---- weights ------------------------------------------------------------------------------


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


def to_layout(model: Network, layout: str) -> dict[str, torch.Tensor]:
    """``model``'s weights (on the CPU) under the names of ``layout`` (:data:`LAYOUTS`)."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown weights layout {layout!r}: expected {' or '.join(LAYOUTS)}")
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


def network_for_weights(path: str | Path, model: str | None = None) -> Network:
    """A network with the weights file ``path`` (either layout) loaded into it.

    ``model`` is what :func:`resolve_model` reads, re-shaped to the checkpoint's number of
    classes; without it, the released network (PONAS-A, B or C in the imagenet space) whose
    shapes the weights fit.
    """
    state = read_state_dict(path)
    classifier = state.get("classifier.1.weight", state.get("head.classifier.weight"))
    if classifier is None or classifier.dim() != 2:
        raise WeightsError(
            f"{Path(path)}: no classifier weights (classifier.1.weight or "
            "head.classifier.weight): not a PONAS network's state dict"
        )
    num_classes = int(classifier.shape[0])
    if model is not None:
        net, _ = resolve_model(model, num_classes=num_classes)
        load_state(net, state, path)
        return net
    space = load_space("imagenet").replace(num_classes=num_classes)
    for name in RELEASED:
        net = Network(space, RELEASED[name])
        try:
            load_state(net, state, path)
        except WeightsError:
            continue
        return net
    raise WeightsError(
        f"{Path(path)} fits none of PONASA, PONASB, PONASC: give the model it belongs to "
        "(--model ARCH.json)"
    )
