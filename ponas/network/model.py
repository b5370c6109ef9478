"""The standalone network: one architecture of a search space (stem, the chosen block of every
layer, head), built from the space with one loop."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ponas.blocks import Head, init_weights, make_block, make_stem
from ponas.space import SearchSpace


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
