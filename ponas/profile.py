"""Timing on a device: a latency lookup table measured block by block inside whole networks,
networks timed plainly as a user times them, and the checks of a table against them.

:func:`profile_latency` times every block on a device, inside whole networks, fits what a whole
forward costs beyond its blocks against networks timed plainly and returns the lookup table
(``ponas-latency/1``, :mod:`ponas.cost.latency`); :func:`latency_error` checks a table against
random networks timed plainly. Needs torch (imported where it is used) and builds
:class:`ponas.network.Network` models; the torch-free statistics are in :mod:`ponas.cost.fit`.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from ponas.cost.fit import (
    FIT_NETWORKS,
    check_rows,
    context_rounds,
    extreme_architectures,
    fit_overhead,
    random_architectures,
)
from ponas.cost.latency import CLOCKS, LUT_FORMAT, predict_latency
from ponas.space import SearchSpace


def _clock(name: str, device: Any) -> Callable[[], float]:
    if name not in CLOCKS:
        raise ValueError(f"unknown clock {name!r}: expected {', '.join(CLOCKS)}")
    if name == "cpu" and getattr(device, "type", "cpu") != "cpu":
        raise ValueError("the cpu clock times CPU work; time a GPU with the wall clock")
    return CLOCKS[name]


def median_ms(
    fn: Callable[[], Any],
    sync: Callable[[], None],
    warmup: int,
    repeats: int,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """The median ms of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones, each call
    followed by ``sync`` (``torch.cuda.synchronize`` on a GPU) and timed by ``clock``."""
    for _ in range(warmup):
        fn()
        sync()
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        sync()
        times.append((clock() - start) * 1000.0)
    return statistics.median(times)


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
        lut["check"] = check_rows(lut, space, archs, measured[len(fitted) :])
    return lut


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
    return check_rows(lut, space, archs, measured)
