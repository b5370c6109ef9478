"""What a model name or file means: the released PONAS-A/B/C by name, an architecture
``.json``, a checkpoint bundle ``.pt``, or a plain weights file and the network it fits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ponas.network.bundle import load_bundle
from ponas.network.model import Network
from ponas.network.weights import WeightsError, load_state, read_state_dict
from ponas.space import Candidate, SearchSpace, SpaceError, load_space, read_spec_file


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
    p = Path(path)
    data = read_spec_file(p, "architecture", "json")
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
