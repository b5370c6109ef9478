"""The torch-free statistics of latency profiling: which networks to time (every candidate in
context, the table's extremes, random ones), the least-squares fit of a whole forward's
``overhead_ms`` and ``scale``, and how well a lookup table's prediction tracks networks timed
plainly. :mod:`ponas.profile` does the timing on a device.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence
from typing import Any

from ponas.cost.latency import predict_latency
from ponas.space import SearchSpace


def context_rounds(space: SearchSpace) -> list[list[str]]:
    """Architectures that together hold every allowed candidate of every layer: in round
    ``r`` layer ``l`` takes its ``(r + l)``-th allowed candidate, so each candidate is timed
    among varying neighbours."""
    allowed = [space.allowed_candidates(i) for i in range(space.num_layers)]
    rounds = max(len(a) for a in allowed)
    return [[a[(r + i) % len(a)] for i, a in enumerate(allowed)] for r in range(rounds)]


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


def random_architectures(space: SearchSpace, n: int, seed: int = 0) -> list[list[str]]:
    """``n`` architectures, each layer's candidate drawn uniformly (reproducible by ``seed``)."""
    rng = random.Random(seed)
    return [
        [rng.choice(space.allowed_candidates(i)) for i in range(space.num_layers)] for _ in range(n)
    ]


def check_rows(
    lut: dict[str, Any],
    space: SearchSpace,
    archs: Sequence[Sequence[str]],
    measured: Sequence[float],
) -> list[dict[str, Any]]:
    """One row per architecture: its predicted (fitted and plainly summed) and measured
    latency and the error in % (what :func:`prediction_quality` reads)."""
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
