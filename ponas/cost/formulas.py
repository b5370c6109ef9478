"""Cost formulas: the MACs and params of every (layer, candidate) and of the fixed parts.

MACs count the multiply-accumulates of convolutions and linear layers (the paper's "FLOPs");
params count every learnable tensor, BatchNorm's affine weights included. Both are computed
from the spec alone, so a table can carry them without building a model. A network's cost is
``base + sum over layers``. :func:`cost_tables` lays them out as an accuracy table's cost
matrices, with a latency lookup table's times (:mod:`ponas.cost.latency`) when one is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ponas.cost.latency import check_lut, lut_fit
from ponas.space import Candidate, SearchSpace, conv_out_size, se_channels


@dataclass(frozen=True)
class Cost:
    macs: int = 0
    params: int = 0

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.macs + other.macs, self.params + other.params)


def _conv(
    cin: int, cout: int, kernel: int, out_size: int, groups: int = 1, bn: bool = True
) -> Cost:
    weights = cin // groups * cout * kernel * kernel
    return Cost(weights * out_size * out_size, weights + (2 * cout if bn else cout))


def mbconv_cost(
    cin: int,
    cout: int,
    expansion: int,
    kernel: int,
    stride: int,
    in_size: int,
    se: bool = False,
    se_reduction: int = 4,
    se_min_channels: int = 8,
) -> Cost:
    """Cost of one MBConv block (see :class:`ponas.blocks.MBConv`)."""
    hidden = cin * expansion
    out_size = conv_out_size(in_size, stride, kernel)
    total = Cost()
    if expansion != 1:
        total += _conv(cin, hidden, 1, in_size)
    total += _conv(hidden, hidden, kernel, out_size, groups=hidden)
    if se:
        squeeze = se_channels(hidden, se_reduction, se_min_channels)
        # two 1x1 convs with bias on the pooled 1x1 map
        total += _conv(hidden, squeeze, 1, 1, bn=False) + _conv(squeeze, hidden, 1, 1, bn=False)
    total += _conv(hidden, cout, 1, out_size)
    return total


def candidate_cost(space: SearchSpace, layer: int, candidate: str) -> Cost:
    """Cost of ``candidate`` at searchable ``layer``; ``skip`` costs nothing."""
    cand = Candidate.parse(candidate)
    if cand.skip:
        return Cost()
    spec = space.layers[layer]
    return mbconv_cost(
        spec.in_channels,
        spec.out_channels,
        cand.expansion,
        cand.kernel,
        spec.stride,
        spec.in_size,
        cand.se,
        space.se_reduction,
        space.se_min_channels,
    )


def base_cost(space: SearchSpace) -> Cost:
    """Cost of the fixed parts: stem conv, first block, head conv and classifier."""
    stem = _conv(space.in_channels, space.stem_channels, space.stem_kernel, space.stem_out_size)
    first = mbconv_cost(
        space.stem_channels,
        space.first_channels,
        space.first_expansion,
        space.first_kernel,
        1,
        space.stem_out_size,
    )
    last = space.layers[-1]
    head = _conv(last.out_channels, space.head_channels, 1, last.out_size)
    classifier = Cost(
        space.head_channels * space.num_classes,
        space.head_channels * space.num_classes + space.num_classes,
    )
    return stem + first + head + classifier


def network_cost(space: SearchSpace, choices: Sequence[str]) -> Cost:
    """Whole-network cost: base + the chosen candidate of every layer."""
    choices = space.validate_choices(choices)
    total = base_cost(space)
    for layer, name in enumerate(choices):
        total += candidate_cost(space, layer, name)
    return total


def cost_tables(
    space: SearchSpace, latency_lut: dict[str, Any] | None = None
) -> tuple[dict[str, list[list[float | None]]], dict[str, float]]:
    """``(cost, base_cost)`` in the ``ponas-table/1`` layout: rows = layers, columns =
    ``space.candidates``, ``None`` where a candidate is not allowed. ``latency_ms`` is added
    when a lookup table from :func:`profile_latency` is given."""
    macs: list[list[float | None]] = []
    params: list[list[float | None]] = []
    for layer in range(space.num_layers):
        row_m: list[float | None] = []
        row_p: list[float | None] = []
        for name in space.candidates:
            if space.allowed(layer, name):
                c = candidate_cost(space, layer, name)
                row_m.append(c.macs)
                row_p.append(c.params)
            else:
                row_m.append(None)
                row_p.append(None)
        macs.append(row_m)
        params.append(row_p)
    base = base_cost(space)
    cost: dict[str, list[list[float | None]]] = {"macs": macs, "params": params}
    base_d: dict[str, float] = {"macs": base.macs, "params": base.params}
    if latency_lut is not None:
        check_lut(space, latency_lut)
        overhead, scale = lut_fit(latency_lut)
        cost["latency_ms"] = [
            [None if ms is None else scale * float(ms) for ms in row]
            for row in latency_lut["layers"]
        ]
        base_d["latency_ms"] = max(0.0, scale * float(latency_lut["base_ms"]) + overhead)
    return cost, base_d
