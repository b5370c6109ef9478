"""The latency lookup table format (``ponas-latency/1``, see docs/latency.md): checking that a
table fits a space or an accuracy table, reading one, its fitted ``overhead_ms`` and ``scale``,
the latency it predicts for a network, and an accuracy table with its times added.

Torch-free: the tables are measured on a device by :mod:`ponas.profile`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, Self, TypeVar

from ponas.space import SearchSpace

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


class _Table(Protocol):
    """What :func:`with_latency` reads of an accuracy table (:class:`ponas.table.AccuracyTable`,
    which imports this module, so it is described here rather than imported)."""

    space: dict[str, Any]
    candidates: list[str]
    accuracy: list[list[float | None]]

    @property
    def has_full_space(self) -> bool: ...

    @property
    def num_layers(self) -> int: ...

    def to_dict(self) -> dict[str, Any]: ...

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Self: ...


TableT = TypeVar("TableT", bound=_Table)


def with_latency(table: TableT, lut: dict[str, Any]) -> TableT:
    """``table`` with a device's latency: ``cost.latency_ms`` and ``base_cost.latency_ms`` from
    the lookup table with its fit applied (see :func:`lut_fit`: every entry times ``scale``, and
    ``overhead_ms`` in the base), ``meta.latency_device`` naming the device (any earlier latency
    is replaced). The lookup table must be of the table's space: same name, candidates, layers
    (and block shapes when both carry the full spec), with a time wherever the table has an
    accuracy; a :class:`ValueError` says which part differs."""
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
    return type(table).from_dict(d)


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
