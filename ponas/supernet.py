"""The supernet: every candidate of every searchable layer, sharing the fixed stem and head."""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch
from torch import nn

from ponas.blocks import Head, init_weights, make_block, make_stem
from ponas.space import SearchSpace


class Supernet(nn.Module):
    """All candidates of ``space``; ``forward(x, choices)`` runs one path.

    Parameters are named ``stem.*``, ``layers.{l}.{candidate}.*`` and ``head.*``; a standalone
    :class:`ponas.network.Network` names the same tensors ``layers.{l}.*``, so a chosen path's
    weights map one-to-one (:meth:`path_state_dict`).
    """

    def __init__(self, space: SearchSpace) -> None:
        super().__init__()
        self.space = space
        self.stem = make_stem(space)
        self.layers = nn.ModuleList(
            nn.ModuleDict({c: make_block(space, i, c) for c in space.allowed_candidates(i)})
            for i in range(space.num_layers)
        )
        self.head = Head(space)
        init_weights(self)

    def forward(self, x: torch.Tensor, choices: Sequence[str]) -> torch.Tensor:
        x = self.stem(x)
        for blocks, name in zip(self.layers, choices, strict=True):
            x = blocks[name](x)
        return self.head(x)

    def forward_layers(self, x: torch.Tensor, choices: Sequence[str], start: int) -> torch.Tensor:
        """Run layers ``start .. start + len(choices) - 1`` and the head on features ``x``."""
        for offset, name in enumerate(choices):
            x = self.layers[start + offset][name](x)
        return self.head(x)

    def features(self, x: torch.Tensor, prefix: Sequence[str]) -> torch.Tensor:
        """Stem and the first ``len(prefix)`` layers: the input of layer ``len(prefix)``."""
        x = self.stem(x)
        for blocks, name in zip(self.layers, prefix, strict=False):
            x = blocks[name](x)
        return x

    def sample(self, rng: random.Random, prefix: Sequence[str] = ()) -> list[str]:
        """A uniformly sampled path (one allowed candidate per layer) after a fixed prefix."""
        return list(prefix) + [
            rng.choice(self.space.allowed_candidates(i))
            for i in range(len(prefix), self.space.num_layers)
        ]

    def path_modules(self, choices: Sequence[str]) -> nn.ModuleList:
        """The modules a path uses (for BN recalibration and per-path optimizers)."""
        return nn.ModuleList(
            [
                self.stem,
                *(blocks[c] for blocks, c in zip(self.layers, choices, strict=True)),
                self.head,
            ]
        )

    def path_state_dict(self, choices: Sequence[str]) -> dict[str, torch.Tensor]:
        """The state dict of the standalone network with these choices (keys renamed)."""
        choices = self.space.validate_choices(choices)
        state = {}
        for key, value in self.state_dict().items():
            if key.startswith("layers."):
                _, layer, cand, rest = key.split(".", 3)
                if choices[int(layer)] != cand:
                    continue
                key = f"layers.{layer}.{rest}"
            state[key] = value
        return state
