"""Costs of every (layer, candidate) and of the fixed parts: MACs, params, measured latency.

MACs count the multiply-accumulates of convolutions and linear layers (the paper's "FLOPs");
params count every learnable tensor, BatchNorm's affine weights included. Both are computed
from the spec alone, so a table can carry them without building a model. A network's cost is
``base + sum over layers``.

Latency is measured, not computed: :func:`profile_latency` times every block on a device,
inside whole networks, fits what a whole forward costs beyond its blocks against networks timed
plainly, and writes a lookup table; :func:`with_latency` adds it to any table of the same space;
:func:`prediction_quality` says how well the prediction tracks plainly timed whole networks.
The format is described in docs/latency.md.
"""

from __future__ import annotations

import json
import math
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ponas.space import Candidate, SearchSpace, conv_out_size, se_channels

if TYPE_CHECKING:
    from ponas.table import AccuracyTable


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


# ---- latency lookup tables ------------------------------------------------------------------

LUT_FORMAT = "ponas-latency/1"
# The parts of a space spec that shape its blocks (not its dataset, classes or training).
_SHAPE_KEYS = ("input_size", "in_channels", "stem", "first_block", "stages", "se", "head")


def check_lut(space: SearchSpace, lut: dict[str, Any]) -> None:
    """Check that a latency lookup table was measured for this space's layout."""
    _check_lut_layout(
        lut, space.name, list(space.candidates), space.num_layers, space.to_dict(), "space"
    )


def _check_lut_layout(
    lut: Any,
    name: str,
    candidates: list[str],
    num_layers: int,
    spec: dict[str, Any] | None,
    what: str,
) -> None:
    """The lookup table is ``ponas-latency/1`` and was measured for ``name``'s layout: the same
    candidates (columns), layers and, where both carry a full spec, the same block shapes."""
    if not isinstance(lut, dict) or lut.get("format") != LUT_FORMAT:
        got = lut.get("format") if isinstance(lut, dict) else type(lut).__name__
        raise ValueError(f"latency table: expected format {LUT_FORMAT!r}, got {got!r}")
    if lut.get("space") != name:
        raise ValueError(
            f"latency table was measured for the {lut.get('space')!r} space, the {what} is "
            f"of the {name!r} space"
        )
    if list(lut.get("candidates", [])) != list(candidates):
        raise ValueError(
            f"latency table was measured for candidates {lut.get('candidates')}, "
            f"the {what} has {list(candidates)}"
        )
    layers = lut.get("layers")
    if not isinstance(layers, list) or len(layers) != num_layers:
        got = len(layers) if isinstance(layers, list) else 0
        raise ValueError(f"latency table has {got} layers, the {what} has {num_layers}")
    lut_spec = lut.get("spec")
    if spec is not None and isinstance(lut_spec, dict):
        for key in _SHAPE_KEYS:
            if spec.get(key) != lut_spec.get(key):
                raise ValueError(
                    f"latency table was measured for a different {name!r} space: its {key!r} "
                    f"is {lut_spec.get(key)!r}, the {what}'s is {spec.get(key)!r} "
                    "(profile again with the same space)"
                )


def load_lut(path: str | Path) -> dict[str, Any]:
    """Read a ``ponas-latency/1`` file written by ``ponas profile``; one-line errors."""
    path = Path(path)
    try:
        lut = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: no such latency table file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a latency table ({exc})") from None
    if not isinstance(lut, dict) or lut.get("format") != LUT_FORMAT:
        raise ValueError(
            f"{path}: not a latency table (expected format {LUT_FORMAT!r}, as `ponas profile` "
            "writes)"
        )
    return lut


def with_latency(table: AccuracyTable, lut: dict[str, Any]) -> AccuracyTable:
    """``table`` with a device's latency: ``cost.latency_ms`` and ``base_cost.latency_ms`` from
    the lookup table with its fit applied (see :func:`lut_fit`: every entry times ``scale``, and
    ``overhead_ms`` in the base), ``meta.latency_device`` naming the device (any earlier latency
    is replaced). The lookup table must be of the table's space: same name, candidates, layers
    (and block shapes when both carry the full spec), with a time wherever the table has an
    accuracy; a :class:`ValueError` says which part differs."""
    from ponas.table import AccuracyTable

    spec = table.space if table.has_full_space else None
    _check_lut_layout(lut, table.space["name"], table.candidates, table.num_layers, spec, "table")
    overhead, scale = lut_fit(lut)
    latency: list[list[float | None]] = []
    for i, (row, times) in enumerate(zip(table.accuracy, lut["layers"], strict=True)):
        if not isinstance(times, list) or len(times) != len(table.candidates):
            raise ValueError(f"latency table: layer {i} does not have one time per candidate")
        out: list[float | None] = []
        for cand, acc, ms in zip(table.candidates, row, times, strict=True):
            if acc is not None and not _is_time(ms):
                raise ValueError(
                    f"latency table has no time for layer {i}, {cand!r}, which the table allows"
                )
            out.append(None if acc is None else scale * float(ms))
        latency.append(out)
    if not _is_time(lut.get("base_ms")):
        raise ValueError(f"latency table: base_ms is {lut.get('base_ms')!r}, expected ms >= 0")
    d = table.to_dict()
    d["cost"]["latency_ms"] = latency
    d["base_cost"]["latency_ms"] = max(0.0, scale * float(lut["base_ms"]) + overhead)
    d["meta"]["latency_device"] = str(lut.get("device") or "unnamed device")
    return AccuracyTable.from_dict(d)


def _is_time(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


def lut_fit(lut: dict[str, Any]) -> tuple[float, float]:
    """``(overhead_ms, scale)`` of a lookup table: a whole network is predicted to take
    ``overhead_ms + scale * (base_ms + its blocks' ms)``. Tables written before the fit was
    measured have neither field and read as ``(0, 1)``: the plain sum."""
    overhead = lut.get("overhead_ms", 0.0)
    scale = lut.get("scale", 1.0)
    if not isinstance(overhead, int | float) or isinstance(overhead, bool):
        raise ValueError(f"latency table: overhead_ms is {overhead!r}, expected ms")
    if not math.isfinite(overhead):
        raise ValueError(f"latency table: overhead_ms is {overhead!r}, expected ms")
    if not _is_time(scale) or scale == 0:
        raise ValueError(f"latency table: scale is {scale!r}, expected a number > 0")
    base = lut.get("base_ms")
    if _is_time(base) and scale * base + overhead < -1e-9:
        raise ValueError(
            f"latency table: overhead_ms {overhead!r} takes the fixed parts below 0 ms"
        )
    return float(overhead), float(scale)


#: Clocks a lookup table can be timed with: ``wall`` (elapsed time: latency on a machine of
#: one's own) and ``cpu`` (CPU time of the timing thread: on a CPU shared with other programs,
#: the time the network itself needs, without the time it waits for a core; equal to ``wall``
#: on an idle machine with one thread).
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.thread_time}


def _clock(name: str, device: Any) -> Callable[[], float]:
    if name not in CLOCKS:
        raise ValueError(f"unknown clock {name!r}: expected {', '.join(CLOCKS)}")
    if name == "cpu" and getattr(device, "type", "cpu") != "cpu":
        raise ValueError("the cpu clock times CPU work; time a GPU with the wall clock")
    return CLOCKS[name]


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


def context_rounds(space: SearchSpace) -> list[list[str]]:
    """Architectures that together hold every allowed candidate of every layer: in round
    ``r`` layer ``l`` takes its ``(r + l)``-th allowed candidate, so each candidate is timed
    among varying neighbours."""
    allowed = [space.allowed_candidates(i) for i in range(space.num_layers)]
    rounds = max(len(a) for a in allowed)
    return [[a[(r + i) % len(a)] for i, a in enumerate(allowed)] for r in range(rounds)]


def profile_latency(
    space: SearchSpace,
    device: str = "cpu",
    batch: int = 1,
    warmup: int = 5,
    repeats: int = 20,
    progress: Callable[[int, int], None] | None = None,
    clock: str = "wall",
    check: int = 0,
    seed: int = 0,
    fit: bool = True,
) -> dict[str, Any]:
    """Time every (layer, candidate) block and the fixed parts on ``device``, in context, then
    fit what a whole forward costs beyond them.

    A block timed alone on its own input runs at another speed than inside a network (its
    weights and input stay in cache), so every block is timed where it runs: the networks of
    :func:`context_rounds` run forward layer by layer, each part timed on its own (CUDA
    synchronized after each). The networks take turns, ``repeats`` passes each after
    ``warmup``, and each keeps its fastest pass: a machine busy with other work slows some
    passes, and taking turns spreads that over all networks alike. An entry is its part of
    that pass. ``clock`` is one of :data:`CLOCKS`.

    A user times a network plainly: its whole forward, the median of many calls. That costs
    more than the sum of its parts' fastest passes (the spread of calls, dispatch between
    layers, allocation), so with ``fit`` the fastest and slowest networks the table predicts
    and :data:`FIT_NETWORKS` random ones are timed that plain way (:func:`plain_times`) and
    ``overhead_ms`` and ``scale`` are fitted by least squares (:func:`fit_overhead`): a
    network is predicted to take ``overhead_ms + scale * (base_ms + sum of its blocks)``.
    (Not on the context networks themselves: their entries are their own fastest pass, a
    luckier figure than any other network's sum.)

    With ``check``, that many random whole networks (drawn with ``seed``) are timed plainly,
    taking turns with the fitted ones, and ``check`` in the result holds their predicted and
    measured latency (see :func:`latency_error`). ``plain`` says how the plain times were taken.
    Returns the lookup table (``format: ponas-latency/1``) that :func:`with_latency` uses.
    """
    import torch

    dev = torch.device(device)
    rounds = context_rounds(space)
    x = torch.randn(batch, space.in_channels, space.input_size, space.input_size, device=dev)
    nets = _networks(space, rounds, dev)
    parts = [[net.stem, *net.layers, net.head] for net in nets]
    phases = 2 if fit or check else 1

    def block_progress(done: int, total: int) -> None:
        if progress:
            progress(done, phases * total)

    fastest = _fastest_passes(parts, x, clock, warmup, repeats, block_progress)
    samples: dict[tuple[int, str], list[float]] = {}
    for choices, times in zip(rounds, fastest, strict=True):
        for i, name in enumerate(choices):
            samples.setdefault((i, name), []).append(times[i + 1])
    layers = [
        [
            statistics.median(samples[(i, c)]) if space.allowed(i, c) else None
            for c in space.candidates
        ]
        for i in range(space.num_layers)
    ]
    lut: dict[str, Any] = {
        "format": LUT_FORMAT,
        "space": space.name,
        "spec": space.to_dict(),
        "device": device_name(dev),
        "batch": batch,
        "method": "in context, fastest of interleaved passes",
        "clock": clock,
        "candidates": list(space.candidates),
        "base_ms": statistics.median(times[0] + times[-1] for times in fastest),
        "layers": layers,
    }
    if not fit and not check:
        return lut
    fitted = []
    if fit:
        fitted = [*extreme_architectures(space, lut)]
        fitted += random_architectures(space, FIT_NETWORKS, seed + 1_000_003)
    archs = random_architectures(space, check, seed)
    plain_nets = _networks(space, [*fitted, *archs], dev)

    def plain_progress(done: int, total: int) -> None:
        if progress:
            progress(total + done, 2 * total)

    measured = plain_times(plain_nets, x, clock, warmup, repeats, plain_progress)
    lut["plain"] = plain_method(dev, batch, clock, warmup, repeats)
    if fit:
        sums = [predict_latency(lut, space, choices) for choices in fitted]
        overhead, scale = fit_overhead(sums, measured[: len(fitted)], lut["base_ms"])
        lut["overhead_ms"], lut["scale"] = overhead, scale
        lut["fit"] = {
            "networks": len(fitted),
            "method": "least squares of plain whole-network times on overhead_ms + scale * sum",
        }
    if archs:
        lut["check"] = _check_rows(lut, space, archs, measured[len(fitted) :])
    return lut


#: Random networks (besides the fastest and the slowest) the whole-forward overhead is fitted on.
FIT_NETWORKS = 8


def extreme_architectures(space: SearchSpace, lut: dict[str, Any]) -> list[list[str]]:
    """The fastest and the slowest network by the lookup table's blocks: the ends of the range
    a fit must hold over."""
    cols = {c: j for j, c in enumerate(lut["candidates"])}
    out = []
    for pick in (min, max):
        out.append(
            [
                pick(space.allowed_candidates(i), key=lambda c, i=i: lut["layers"][i][cols[c]])
                for i in range(space.num_layers)
            ]
        )
    return out


def fit_overhead(
    summed: Sequence[float], measured: Sequence[float], base_ms: float = 0.0
) -> tuple[float, float]:
    """``(overhead_ms, scale)`` so that ``overhead_ms + scale * summed`` matches ``measured`` in
    least squares, refitted once without the points whose residual lies more than 3 scaled
    median absolute deviations from the median (a network whose timing another program
    disturbed). Where the summed times spread too little to tell a scale from an overhead
    (a standard deviation under 10% of their mean) or the fitted scale is implausible (outside
    0.5-2), the scale stays 1 and the overhead is the mean difference. The overhead never
    takes the fixed parts below 0 ms (``scale * base_ms + overhead_ms >= 0``)."""
    if not summed or len(summed) != len(measured):
        raise ValueError("fit_overhead: needs as many measured times as summed ones, at least 1")
    points = list(zip(summed, measured, strict=True))
    overhead, scale = _least_squares(points)
    residuals = [m - overhead - scale * s for s, m in points]
    mid = statistics.median(residuals)
    mad = statistics.median(abs(r - mid) for r in residuals)
    if mad > 0:
        kept = [
            p for p, r in zip(points, residuals, strict=True) if abs(r - mid) <= 3 * 1.4826 * mad
        ]
        if len(kept) < len(points):
            overhead, scale = _least_squares(kept)
    return max(overhead, -scale * base_ms), scale


def _least_squares(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    summed = [s for s, _ in points]
    mean_s = statistics.fmean(summed)
    mean_m = statistics.fmean(m for _, m in points)
    var = sum((s - mean_s) ** 2 for s in summed)
    scale = 1.0
    if len(points) > 2 and mean_s > 0 and math.sqrt(var / len(points)) >= 0.1 * mean_s:
        slope = sum((s - mean_s) * (m - mean_m) for s, m in points) / var
        if 0.5 <= slope <= 2.0:
            scale = slope
    return mean_m - scale * mean_s, scale


def plain_method(dev: Any, batch: int, clock: str, warmup: int, repeats: int) -> dict[str, Any]:
    """How :func:`plain_times` timed: what a report of the check names."""
    import torch

    threads = torch.get_num_threads() if torch.device(dev).type == "cpu" else None
    return {
        "what": "whole forward, median of consecutive calls after warm-up",
        "threads": threads,
        "batch": batch,
        "warmup": warmup,
        "repeats": repeats,
        "clock": clock,
    }


def plain_times(
    nets: Sequence[Any],
    x: Any,
    clock: str = "wall",
    warmup: int = 5,
    repeats: int = 25,
    progress: Callable[[int, int], None] | None = None,
    burst: int = 5,
) -> list[float]:
    """Each network timed as a user times it: ``net(x)`` whole (CUDA synchronized), calls of
    the same network one after another, the median ms of ``repeats`` calls after ``warmup``,
    under ``torch.inference_mode``. The networks take turns ``burst`` timed calls at a time
    (each turn after one untimed call, so the network's weights are where a user's repeated
    calls find them), so load from other programs falls on all alike."""
    import torch

    dev = x.device
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    now = _clock(clock, dev)
    times: list[list[float]] = [[] for _ in nets]
    with torch.inference_mode():
        for net in nets:
            for _ in range(warmup):
                net(x)
        sync()
        while len(times[0]) < repeats:
            for k, net in enumerate(nets):
                net(x)
                sync()
                for _ in range(min(burst, repeats - len(times[k]))):
                    start = now()
                    net(x)
                    sync()
                    times[k].append((now() - start) * 1000.0)
            if progress:
                progress(len(times[0]), repeats)
    return [statistics.median(t) for t in times]


def random_architectures(space: SearchSpace, n: int, seed: int = 0) -> list[list[str]]:
    """``n`` architectures, each layer's candidate drawn uniformly (reproducible by ``seed``)."""
    rng = random.Random(seed)
    return [
        [rng.choice(space.allowed_candidates(i)) for i in range(space.num_layers)] for _ in range(n)
    ]


def _networks(space: SearchSpace, archs: Sequence[Sequence[str]], dev: Any) -> list[Any]:
    from ponas.network import Network

    return [Network(space, choices).to(dev).eval() for choices in archs]


def _fastest_passes(
    parts: Sequence[Sequence[Any]],
    x: Any,
    clock: str,
    warmup: int,
    repeats: int,
    progress: Callable[[int, int], None] | None = None,
) -> list[list[float]]:
    """For each network, given as its parts in order, the ms of each part in its fastest of
    ``repeats`` passes (after ``warmup``); the networks take turns, pass by pass."""
    import torch

    dev = x.device
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    now = _clock(clock, dev)
    best: list[list[float] | None] = [None] * len(parts)
    with torch.inference_mode():
        for net in parts:
            for _ in range(warmup):
                _time_parts(net, x, sync, now)
        sync()
        for rep in range(repeats):
            for k, net in enumerate(parts):
                times = _time_parts(net, x, sync, now)
                if best[k] is None or sum(times) < sum(best[k]):
                    best[k] = times
            if progress:
                progress(rep + 1, repeats)
    return [list(times or []) for times in best]


def _time_parts(
    parts: Sequence[Any], x: Any, sync: Callable[[], None], clock: Callable[[], float]
) -> list[float]:
    """One forward pass through ``parts`` in order; the ms each part took."""
    times = []
    for part in parts:
        start = clock()
        x = part(x)
        sync()
        times.append((clock() - start) * 1000.0)
    return times


def device_name(dev: Any) -> str:
    """A human name for a torch device: the GPU model, or the CPU with its thread count."""
    import platform

    import torch

    dev = torch.device(dev)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def predict_latency(
    lut: dict[str, Any], space: SearchSpace, choices: Sequence[str], fitted: bool = True
) -> float:
    """Lookup-table latency of an architecture, in ms: ``overhead_ms + scale * (base_ms + its
    blocks)`` (see :func:`lut_fit`); with ``fitted=False`` the plain sum of base and blocks."""
    choices = space.validate_choices(choices)
    cols = {c: j for j, c in enumerate(lut["candidates"])}
    summed = float(lut["base_ms"])
    summed += sum(lut["layers"][i][cols[c]] for i, c in enumerate(choices))
    if not fitted:
        return summed
    overhead, scale = lut_fit(lut)
    return overhead + scale * summed


def latency_error(
    lut: dict[str, Any],
    space: SearchSpace,
    device: str = "cpu",
    samples: int = 5,
    seed: int = 0,
    warmup: int = 5,
    repeats: int = 25,
) -> list[dict[str, Any]]:
    """For random architectures: predicted vs plainly measured whole-network latency (see
    :func:`plain_times`; the lookup table's clock and batch) and the error in %."""
    import torch

    archs = random_architectures(space, samples, seed)
    x = torch.randn(
        lut["batch"], space.in_channels, space.input_size, space.input_size, device=device
    )
    nets = _networks(space, archs, x.device)
    measured = plain_times(nets, x, lut.get("clock", "wall"), warmup, repeats)
    return _check_rows(lut, space, archs, measured)


def _check_rows(
    lut: dict[str, Any],
    space: SearchSpace,
    archs: Sequence[Sequence[str]],
    measured: Sequence[float],
) -> list[dict[str, Any]]:
    rows = []
    for choices, ms in zip(archs, measured, strict=True):
        predicted = predict_latency(lut, space, choices)
        rows.append(
            {
                "choices": list(choices),
                "predicted_ms": predicted,
                "summed_ms": predict_latency(lut, space, choices, fitted=False),
                "measured_ms": ms,
                "error_pct": 100.0 * (predicted - ms) / ms,
            }
        )
    return rows


def prediction_quality(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """How well the prediction tracks measured networks (rows of :func:`latency_error`): mean
    absolute error in %, mean signed error in % (the bias: below 0, networks run slower than
    predicted and a latency budget is not kept), and Spearman's rank correlation (whether the
    prediction orders networks as the device does; what a budget relies on)."""
    if not rows:
        return {}
    mae = statistics.fmean(abs(r["error_pct"]) for r in rows)
    bias = statistics.fmean(r["error_pct"] for r in rows)
    pred = _ranks([r["predicted_ms"] for r in rows])
    meas = _ranks([r["measured_ms"] for r in rows])
    rho = _pearson(pred, meas) if len(rows) > 1 else 1.0
    return {"mean_abs_error_pct": mae, "bias_pct": bias, "rank_correlation": rho}


def _ranks(values: Sequence[float]) -> list[float]:
    """Ranks from 1, ties sharing their mean rank."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def _pearson(a: Sequence[float], b: Sequence[float]) -> float:
    ma, mb = statistics.fmean(a), statistics.fmean(b)
    cov = sum((x - ma) * (y - mb) for x, y in zip(a, b, strict=True))
    var = math.sqrt(sum((x - ma) ** 2 for x in a) * sum((y - mb) ** 2 for y in b))
    return cov / var if var else 0.0
