"""Costs of every (layer, candidate) and of the fixed parts: MACs, params, measured latency.

MACs count the multiply-accumulates of convolutions and linear layers (the paper's "FLOPs");
params count every learnable tensor, BatchNorm's affine weights included. Both are computed
from the spec alone, so a table can carry them without building a model. A network's cost is
``base + sum over layers``.

Latency is measured, not computed: :func:`profile_latency` times every block on a device and
writes a lookup table; the summed prediction's error against a whole network is reported.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ponas.space import Candidate, SearchSpace, conv_out_size


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
    from ponas.blocks import se_channels

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
        cost["latency_ms"] = [list(row) for row in latency_lut["layers"]]
        base_d["latency_ms"] = float(latency_lut["base_ms"])
    return cost, base_d


# ---- latency lookup tables ------------------------------------------------------------------

LUT_FORMAT = "ponas-latency/1"


def check_lut(space: SearchSpace, lut: dict[str, Any]) -> None:
    """Check that a latency lookup table was measured for this space's layout."""
    if lut.get("format") != LUT_FORMAT:
        raise ValueError(
            f"latency table: expected format {LUT_FORMAT!r}, got {lut.get('format')!r}"
        )
    if list(lut.get("candidates", [])) != list(space.candidates):
        raise ValueError(
            f"latency table was measured for candidates {lut.get('candidates')}, "
            f"the {space.name!r} space has {list(space.candidates)}"
        )
    if len(lut.get("layers", [])) != space.num_layers:
        raise ValueError(
            f"latency table has {len(lut.get('layers', []))} layers, the {space.name!r} space "
            f"has {space.num_layers}"
        )


def _median_ms(fn: Callable[[], Any], sync: Callable[[], None], warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def profile_latency(
    space: SearchSpace,
    device: str = "cpu",
    batch: int = 1,
    warmup: int = 5,
    repeats: int = 20,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Time every (layer, candidate) block and the fixed parts on ``device``.

    Each block is timed alone on an input of its layer's shape (warm-up runs, then the median
    of ``repeats``; CUDA is synchronized around every run). Returns the lookup table
    (``format: ponas-latency/1``) that :func:`cost_tables` and ``ponas profile`` use.
    """
    import torch

    from ponas.blocks import Head, make_block, make_stem

    dev = torch.device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    total = sum(len(space.allowed_candidates(i)) for i in range(space.num_layers)) + 2
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress:
            progress(done, total)

    def time_module(module: torch.nn.Module, shape: tuple[int, ...]) -> float:
        module = module.to(dev).eval()
        x = torch.randn(shape, device=dev)
        with torch.inference_mode():
            ms = _median_ms(lambda: module(x), sync, warmup, repeats)
        tick()
        return ms

    stem_ms = time_module(
        make_stem(space), (batch, space.in_channels, space.input_size, space.input_size)
    )
    layers: list[list[float | None]] = []
    for i, spec in enumerate(space.layers):
        shape = (batch, spec.in_channels, spec.in_size, spec.in_size)
        layers.append(
            [
                time_module(make_block(space, i, c), shape) if space.allowed(i, c) else None
                for c in space.candidates
            ]
        )
    last = space.layers[-1]
    head_ms = time_module(Head(space), (batch, last.out_channels, last.out_size, last.out_size))
    return {
        "format": LUT_FORMAT,
        "space": space.name,
        "device": device_name(dev),
        "batch": batch,
        "candidates": list(space.candidates),
        "base_ms": stem_ms + head_ms,
        "layers": layers,
    }


def device_name(dev: Any) -> str:
    """A human name for a torch device: the GPU model, or the CPU with its thread count."""
    import platform

    import torch

    dev = torch.device(dev)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def predict_latency(lut: dict[str, Any], space: SearchSpace, choices: Sequence[str]) -> float:
    """Summed lookup-table latency of an architecture, in ms."""
    choices = space.validate_choices(choices)
    cols = {c: j for j, c in enumerate(lut["candidates"])}
    return float(lut["base_ms"]) + sum(lut["layers"][i][cols[c]] for i, c in enumerate(choices))


def latency_error(
    lut: dict[str, Any],
    space: SearchSpace,
    device: str = "cpu",
    samples: int = 5,
    seed: int = 0,
    warmup: int = 5,
    repeats: int = 20,
) -> list[dict[str, Any]]:
    """For random architectures: predicted vs measured whole-network latency and error in %."""
    import torch

    from ponas.network import Network

    dev = torch.device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    rng = random.Random(seed)
    rows = []
    for _ in range(samples):
        choices = [rng.choice(space.allowed_candidates(i)) for i in range(space.num_layers)]
        net = Network(space, choices).to(dev).eval()
        x = torch.randn(
            lut["batch"], space.in_channels, space.input_size, space.input_size, device=dev
        )
        with torch.inference_mode():
            measured = _median_ms(lambda net=net, x=x: net(x), sync, warmup, repeats)
        predicted = predict_latency(lut, space, choices)
        rows.append(
            {
                "choices": choices,
                "predicted_ms": predicted,
                "measured_ms": measured,
                "error_pct": 100.0 * (predicted - measured) / measured,
            }
        )
    return rows
