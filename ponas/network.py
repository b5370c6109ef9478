"""Standalone networks from a list of choices, and the released PONAS-A/B/C."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ponas.blocks import Head, init_weights, make_block, make_stem
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
