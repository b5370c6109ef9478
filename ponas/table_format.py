"""The accuracy table's file format, ``ponas-table/1`` (see DESIGN.md "Contracts"): its keys and
cost kinds, the complete check of a table dict (:func:`validate`, every problem a
:class:`TableError` that says what and where) and the JSON layout tables are written in.

A table is one JSON file: the validation accuracy ``A[l][c]`` of every candidate ``c`` at every
searchable layer ``l``, the cost of each (layer, candidate) per cost kind (``macs``, ``params``
and, when a latency lookup table was measured, ``latency_ms``), the cost of the fixed parts
(``base_cost``), the path the progressive search chose, and free-form ``meta``. An optional
``stderr`` matrix gives each entry's standard error over the evaluation suffixes it was averaged
over (tables without it stay valid; ``null`` where there is no entry or no error to give).
``null`` marks a candidate that is not allowed at a layer, in the accuracy matrix and in every
cost matrix alike. ``space`` may be the full spec (needed to build a network) or just
``{"name": ...}`` (enough to choose one).
"""

from __future__ import annotations

import copy
import json
import math
import numbers
from typing import Any

from ponas.space import Candidate, SearchSpace, SpaceError

FORMAT = "ponas-table/1"

#: Cost kinds a table may carry, in the order used for tie-breaking and display.
COST_KINDS = ("macs", "params", "latency_ms")
#: Cost kinds every table carries.
REQUIRED_COST_KINDS = ("macs", "params")

_KEYS = (
    "format",
    "space",
    "candidates",
    "accuracy",
    "cost",
    "base_cost",
    "stderr",
    "path",
    "meta",
)
_REQUIRED_KEYS = ("format", "space", "candidates", "accuracy", "cost", "base_cost", "path")


class TableError(ValueError):
    """An accuracy table (file or data) is not valid; the message says what and where."""


Matrix = list[list[float | None]]


def _is_number(value: Any) -> bool:
    # bool is an int subclass, but true/false in a table is always a mistake
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _plain_number(value: Any) -> int | float:
    """An int stays an int (MACs, params); anything else becomes a Python float."""
    if isinstance(value, numbers.Integral):
        return int(value)
    return float(value)


def _where(name: str, layer: int, col: int, candidates: list[str]) -> str:
    return f"{name}[{layer}][{col}] (layer {layer}, {candidates[col]!r})"


def _show(value: Any) -> str:
    return "null" if value is None else repr(value) if isinstance(value, str) else f"{value}"


def _check_header(d: Any) -> None:
    """The table is an object of the right format with exactly the known keys."""
    if not isinstance(d, dict):
        raise TableError(f"a table must be a JSON object, got {type(d).__name__}")
    if "format" not in d:
        raise TableError(f'not a PONAS accuracy table: missing "format" (expected {FORMAT!r})')
    if d["format"] != FORMAT:
        raise TableError(f"unsupported table format {d['format']!r}: this version reads {FORMAT!r}")
    unknown = sorted(set(d) - set(_KEYS), key=str)
    if unknown:
        raise TableError(
            f"unknown table keys {unknown}; allowed: {list(_KEYS)} (put extra information "
            'under "meta")'
        )
    for key in _REQUIRED_KEYS:
        if key not in d:
            raise TableError(f"table is missing the key {key!r}")


def _check_space(space: Any) -> SearchSpace | None:
    """The space spec names a space; the full space when the spec is complete, else None."""
    if not isinstance(space, dict) or not isinstance(space.get("name"), str) or not space["name"]:
        raise TableError(
            f'"space" must be an object with at least a non-empty "name" (e.g. '
            f'{{"name": "imagenet"}}), got {_show(space) if not isinstance(space, dict) else space}'
        )
    full_space: SearchSpace | None
    try:
        full_space = SearchSpace.from_dict(space)
    except SpaceError:
        full_space = None
    return full_space


def _check_candidates(cands: Any, full_space: SearchSpace | None) -> dict[str, int]:
    """Canonical, distinct candidate names (the space's columns); their column by name."""
    if not isinstance(cands, list) or not cands:
        raise TableError(
            f'"candidates" must be a non-empty list of candidate names, got {_show(cands)}'
        )
    seen: dict[str, int] = {}
    for j, name in enumerate(cands):
        if not isinstance(name, str):
            raise TableError(f"candidates[{j}] is {_show(name)}: expected a candidate name string")
        try:
            canonical = Candidate.parse(name).name
        except SpaceError as exc:
            raise TableError(f"candidates[{j}]: {exc}") from None
        if canonical != name:
            raise TableError(f"candidates[{j}] is {name!r}: write it as {canonical!r}")
        if name in seen:
            raise TableError(
                f"candidates: {name!r} appears twice (columns {seen[name]} and {j}); "
                "each candidate is one column"
            )
        seen[name] = j
    if full_space is not None and list(full_space.candidates) != cands:
        raise TableError(
            f"candidates {cands} do not match the {full_space.name!r} space's columns "
            f"{list(full_space.candidates)}"
        )
    return seen


def _check_row(name: str, i: int, row: Any, width: int) -> None:
    """Row ``i`` of matrix ``name`` is a list with one entry per candidate."""
    if not isinstance(row, list) or len(row) != width:
        got = f"{len(row)} entries" if isinstance(row, list) else _show(row)
        raise TableError(
            f"{name} row {i} has {got}: expected a list of {width} (one per candidate)"
        )


def _check_accuracy(acc: Any, cands: list[str], full_space: SearchSpace | None) -> Matrix:
    """One row per layer of fractions or null, each row with an allowed candidate (and, with a
    full space, null exactly where the space does not allow a candidate)."""
    width = len(cands)
    if not isinstance(acc, list) or not acc:
        raise TableError(
            f'"accuracy" must be a non-empty list of rows (one per layer), got {_show(acc)}'
            if not isinstance(acc, list)
            else '"accuracy" must be a non-empty list of rows (one per layer), got []'
        )
    accuracy: Matrix = []
    for i, row in enumerate(acc):
        _check_row("accuracy", i, row, width)
        out: list[float | None] = []
        for j, v in enumerate(row):
            if v is None:
                out.append(None)
                continue
            if not _is_number(v) or not math.isfinite(v) or not 0.0 <= v <= 1.0:
                raise TableError(
                    f"{_where('accuracy', i, j, cands)} is {_show(v)}: expected a number in "
                    "[0, 1] or null"
                )
            out.append(float(v))
        if all(v is None for v in out):
            raise TableError(
                f"accuracy row {i} is all null: every layer needs at least one allowed candidate"
            )
        accuracy.append(out)
    if full_space is not None:
        if len(accuracy) != full_space.num_layers:
            raise TableError(
                f"accuracy has {len(accuracy)} rows, the {full_space.name!r} space has "
                f"{full_space.num_layers} layers"
            )
        for i, row in enumerate(accuracy):
            for j, v in enumerate(row):
                if v is not None and not full_space.allowed(i, cands[j]):
                    raise TableError(
                        f"{_where('accuracy', i, j, cands)} is {v} but the "
                        f"{full_space.name!r} space does not allow that candidate there: "
                        "expected null"
                    )
    return accuracy


def _check_costs(cost_in: Any, accuracy: Matrix, cands: list[str]) -> dict[str, Matrix]:
    """Known cost kinds, macs and params among them, each a matrix shaped like accuracy."""
    if not isinstance(cost_in, dict):
        raise TableError(
            f'"cost" must be an object of cost matrices ({", ".join(COST_KINDS)}), '
            f"got {_show(cost_in)}"
        )
    for kind in cost_in:
        if kind not in COST_KINDS:
            raise TableError(f"unknown cost kind {kind!r}: expected {', '.join(COST_KINDS)}")
    for kind in REQUIRED_COST_KINDS:
        if kind not in cost_in:
            raise TableError(f'"cost" is missing {kind!r}: every table carries macs and params')
    cost: dict[str, Matrix] = {}
    for kind in COST_KINDS:
        if kind not in cost_in:
            continue
        rows = cost_in[kind]
        if not isinstance(rows, list) or len(rows) != len(accuracy):
            got = f"{len(rows)} rows" if isinstance(rows, list) else f"the value {_show(rows)}"
            raise TableError(
                f"cost.{kind} has {got}: expected {len(accuracy)} rows, the shape of accuracy"
            )
        cost[kind] = _check_cost_matrix(kind, rows, accuracy, cands)
    return cost


def _check_cost_matrix(kind: str, rows: list, accuracy: Matrix, cands: list[str]) -> Matrix:
    """Finite costs >= 0, null exactly where accuracy is null."""
    width = len(cands)
    matrix: Matrix = []
    for i, row in enumerate(rows):
        _check_row(f"cost.{kind}", i, row, width)
        out = []
        for j, v in enumerate(row):
            a = accuracy[i][j]
            where = _where(f"cost.{kind}", i, j, cands)
            if v is None:
                if a is not None:
                    raise TableError(
                        f"{where} is null but accuracy[{i}][{j}] is {a}: a cost is null "
                        "exactly where accuracy is null"
                    )
                out.append(None)
                continue
            if not _is_number(v) or not math.isfinite(v) or v < 0:
                raise TableError(f"{where} is {_show(v)}: expected a finite number >= 0")
            if a is None:
                raise TableError(
                    f"{where} is {v} but accuracy[{i}][{j}] is null: a cost is null "
                    "exactly where accuracy is null"
                )
            out.append(_plain_number(v))
        matrix.append(out)
    return matrix


def _check_base_cost(base_in: Any, cost: dict[str, Matrix]) -> dict[str, float]:
    """One finite base cost >= 0 per cost kind of the table."""
    if not isinstance(base_in, dict):
        raise TableError(
            f'"base_cost" must be an object with one number per cost kind, got {_show(base_in)}'
        )
    if set(base_in) != set(cost):
        raise TableError(
            f"base_cost has {sorted(base_in)} but cost has {sorted(cost)}: give one base cost "
            "per cost kind"
        )
    base_cost: dict[str, float] = {}
    for kind in cost:
        v = base_in[kind]
        if not _is_number(v) or not math.isfinite(v) or v < 0:
            raise TableError(f"base_cost.{kind} is {_show(v)}: expected a finite number >= 0")
        base_cost[kind] = _plain_number(v)
    return base_cost


def _check_path(path: Any, accuracy: Matrix, seen: dict[str, int], cands: list[str]) -> None:
    """One allowed candidate per layer."""
    if not isinstance(path, list) or len(path) != len(accuracy):
        got = f"{len(path)} entries" if isinstance(path, list) else f"the value {_show(path)}"
        raise TableError(
            f'"path" has {got}: expected a list of {len(accuracy)} candidate names (one per layer)'
        )
    for i, name in enumerate(path):
        if name not in seen:
            raise TableError(
                f"path[{i}] is {_show(name)}: not one of the table's candidates "
                f"({', '.join(cands)})"
            )
        if accuracy[i][seen[name]] is None:
            raise TableError(
                f"path[{i}] is {name!r} but accuracy[{i}][{seen[name]}] is null: that candidate "
                f"is not allowed at layer {i}"
            )


def _check_stderr(stderr: Any, accuracy: Matrix, cands: list[str]) -> Matrix:
    """The shape of ``accuracy``; non-negative numbers, null at least where accuracy is."""
    if not isinstance(stderr, list) or len(stderr) != len(accuracy):
        got = f"{len(stderr)} rows" if isinstance(stderr, list) else _show(stderr)
        raise TableError(
            f'"stderr" has {got}: expected {len(accuracy)} rows, one per layer like "accuracy"'
        )
    out: Matrix = []
    for i, row in enumerate(stderr):
        _check_row("stderr", i, row, len(cands))
        for j, v in enumerate(row):
            if v is None:
                continue
            if accuracy[i][j] is None:
                raise TableError(
                    f"{_where('stderr', i, j, cands)} is {_show(v)} but the accuracy there is "
                    "null: expected null"
                )
            if not _is_number(v) or not math.isfinite(v) or v < 0:
                raise TableError(
                    f"{_where('stderr', i, j, cands)} is {_show(v)}: expected a number >= 0 or null"
                )
        out.append([None if v is None else float(v) for v in row])
    return out


def _check_meta(meta: Any, cost: dict[str, Matrix]) -> None:
    """An object; names the latency device when the table has latency."""
    if not isinstance(meta, dict):
        raise TableError(f'"meta" must be an object, got {_show(meta)}')
    if "latency_ms" in cost:
        device = meta.get("latency_device")
        if not isinstance(device, str) or not device:
            raise TableError(
                "cost has latency_ms but meta.latency_device is missing: name the device the "
                'latency was measured on (e.g. "meta": {"latency_device": "NVIDIA H100"})'
            )


def validate(d: Any) -> dict[str, Any]:
    """Check a table dict completely; return its fields normalized (deep copies)."""
    _check_header(d)
    full_space = _check_space(d["space"])
    cands = d["candidates"]
    seen = _check_candidates(cands, full_space)
    accuracy = _check_accuracy(d["accuracy"], cands, full_space)
    cost = _check_costs(d["cost"], accuracy, cands)
    base_cost = _check_base_cost(d["base_cost"], cost)
    _check_path(d["path"], accuracy, seen, cands)
    meta = d.get("meta", {})
    _check_meta(meta, cost)
    stderr = d.get("stderr")
    if stderr is not None:
        stderr = _check_stderr(stderr, accuracy, cands)
    return {
        "space": copy.deepcopy(d["space"]),
        "candidates": list(cands),
        "accuracy": accuracy,
        "cost": cost,
        "base_cost": base_cost,
        "path": list(d["path"]),
        "meta": copy.deepcopy(meta),
        "stderr": stderr,
    }


def dumps(d: dict[str, Any]) -> str:
    """JSON with one matrix row per line: small enough to read, diff and edit by hand."""

    def value(v: Any) -> str:
        return json.dumps(v, allow_nan=False)

    def matrix(rows: Matrix, indent: str) -> str:
        inner = ",\n".join(f"{indent}  {value(r)}" for r in rows)
        return f"[\n{inner}\n{indent}]"

    parts = []
    for key, v in d.items():
        if key in ("accuracy", "stderr"):
            text = matrix(v, "  ")
        elif key == "cost":
            kinds = ",\n".join(f"    {value(k)}: {matrix(m, '    ')}" for k, m in v.items())
            text = f"{{\n{kinds}\n  }}"
        else:
            text = value(v)
        parts.append(f"  {value(key)}: {text}")
    return "{\n" + ",\n".join(parts) + "\n}\n"
