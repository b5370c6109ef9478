"""The accuracy table: what a search produces and what ``ponas deploy`` reads.

A table is one JSON file (``format: ponas-table/1``, see DESIGN.md "Contracts"): the validation
accuracy ``A[l][c]`` of every candidate ``c`` at every searchable layer ``l``, the cost of each
(layer, candidate) per cost kind (``macs``, ``params`` and, when a latency lookup table was
measured, ``latency_ms``), the cost of the fixed parts (``base_cost``), the path the progressive
search chose, and free-form ``meta``. An optional ``stderr`` matrix gives each entry's standard
error over the evaluation suffixes it was averaged over (tables without it stay valid; ``null``
where there is no entry or no error to give). ``null`` marks a candidate that is not allowed at a layer,
in the accuracy matrix and in every cost matrix alike.

The file needs nothing else to be deployed from: :meth:`AccuracyTable.from_dict` checks all of
it and says exactly what is wrong. ``space`` may be the full spec (needed to build a network)
or just ``{"name": ...}`` (enough to choose one).
"""

from __future__ import annotations

import copy
import csv
import io
import json
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ponas.files import atomic_write_text
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


def _validate(d: Any) -> dict[str, Any]:
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


@dataclass(frozen=True)
class CloseCall:
    """A layer whose two best candidates differ by less than their combined standard error:
    the table cannot separate them (see :meth:`AccuracyTable.close_calls`). ``layer`` counts
    from 0; ``noise`` is ``sqrt(best_stderr**2 + second_stderr**2)``."""

    layer: int
    best: str
    best_accuracy: float
    best_stderr: float
    second: str
    second_accuracy: float
    second_stderr: float
    gap: float
    noise: float


@dataclass
class AccuracyTable:
    """Validation accuracy of every candidate at every layer, with costs (``ponas-table/1``).

    Construct with :meth:`build` (from a search), :meth:`from_dict` or :meth:`load`; direct
    construction is validated the same way. Rows are layers, columns are ``candidates``.
    """

    space: dict[str, Any]
    candidates: list[str]
    accuracy: Matrix
    cost: dict[str, Matrix]
    base_cost: dict[str, float]
    path: list[str]
    meta: dict[str, Any] = field(default_factory=dict)
    stderr: Matrix | None = None

    def __post_init__(self) -> None:
        fields = _validate({"format": FORMAT, **self._fields()})
        for key, value in fields.items():
            setattr(self, key, value)

    def _fields(self) -> dict[str, Any]:
        return {
            "space": self.space,
            "candidates": self.candidates,
            "accuracy": self.accuracy,
            "cost": self.cost,
            "base_cost": self.base_cost,
            # optional: a table without standard errors is written as it always was
            **({"stderr": self.stderr} if self.stderr is not None else {}),
            "path": self.path,
            "meta": self.meta,
        }

    # ---- construction -----------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AccuracyTable:
        """Validate a ``ponas-table/1`` dict (raises :class:`TableError`) and build the table."""
        return cls(**_validate(d))

    @classmethod
    def build(
        cls,
        space: SearchSpace,
        accuracy: Matrix,
        path: list[str],
        meta: dict[str, Any] | None = None,
        latency_lut: dict[str, Any] | None = None,
        stderr: Matrix | None = None,
    ) -> AccuracyTable:
        """A table for ``space`` with costs computed from the spec (and ``latency_lut``).

        ``accuracy`` has one row per layer and one column per ``space.candidates``, ``None``
        where a candidate is not allowed; ``stderr``, if given, has the same shape. The lookup table's ``device`` becomes
        ``meta.latency_device`` unless ``meta`` names one already.
        """
        from ponas.cost import cost_tables  # cost.py is heavier; table.py loads without it

        cost, base_cost = cost_tables(space, latency_lut)
        meta = copy.deepcopy(meta or {})
        if latency_lut is not None and "latency_device" not in meta and latency_lut.get("device"):
            meta["latency_device"] = str(latency_lut["device"])
        return cls(
            space=space.to_dict(),
            candidates=list(space.candidates),
            accuracy=[list(row) for row in accuracy],
            cost=cost,
            base_cost=base_cost,
            path=list(path),
            meta=meta,
            stderr=None if stderr is None else [list(row) for row in stderr],
        )

    def to_dict(self) -> dict[str, Any]:
        """The ``ponas-table/1`` dict (deep copies; ``from_dict(t.to_dict()) == t``)."""
        return {"format": FORMAT, **copy.deepcopy(self._fields())}

    # ---- files ------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write the table as JSON, atomically: a reader sees the old file or the new one.

        The text goes to a temporary file in the same folder, which then replaces ``path``;
        on any error the temporary file is removed and ``path`` is untouched.
        """
        path = Path(path)
        text = _dumps(self.to_dict())  # serialize first: a bad value fails before any I/O
        atomic_write_text(path, text)

    @classmethod
    def load(cls, path: str | Path) -> AccuracyTable:
        """Read and validate a table file; every problem is a :class:`TableError` naming it."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise TableError(f"{path}: no such table file") from None
        except IsADirectoryError:
            raise TableError(f"{path}: is a folder, expected a table.json file") from None
        except UnicodeDecodeError:
            raise TableError(f"{path}: not a table file (not UTF-8 text)") from None
        except OSError as exc:
            raise TableError(f"{path}: cannot read the table file ({exc.strerror})") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TableError(
                f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
            ) from None
        try:
            return cls.from_dict(data)
        except TableError as exc:
            raise TableError(f"{path}: {exc}") from None

    # ---- reading ----------------------------------------------------------------------------
    @property
    def num_layers(self) -> int:
        return len(self.accuracy)

    @property
    def cost_kinds(self) -> list[str]:
        """The cost kinds this table carries, in the order ``macs, params, latency_ms``."""
        return [k for k in COST_KINDS if k in self.cost]

    def best_path(self) -> list[str]:
        """The most accurate candidate of every layer; ties go to the cheaper one.

        "Cheaper" compares MACs, then params, then latency, then the column order.
        """
        kinds = self.cost_kinds
        path = []
        for i, row in enumerate(self.accuracy):
            j = min(
                (j for j, a in enumerate(row) if a is not None),
                key=lambda j, i=i, row=row: (-row[j], *(self.cost[k][i][j] for k in kinds), j),
            )
            path.append(self.candidates[j])
        return path

    def score_stderr(self, choices: Sequence[str]) -> float | None:
        """The standard error of the score ``sum_l A[l][c_l]`` of the network ``choices``.

        ``sqrt(sum_l stderr[l][c_l]**2)``: each layer's entry was measured on its own sampled
        suffixes, so their errors add as independent ones. ``None`` when the table has no
        standard errors or one of the chosen entries has none (a single evaluation suffix);
        a row without any error (one distinct context, as at the last layer) adds nothing.
        """
        if self.stderr is None:
            return None
        if len(choices) != self.num_layers:
            raise TableError(
                f"a network of this table has {self.num_layers} layers, got {len(choices)} choices"
            )
        column = {c: j for j, c in enumerate(self.candidates)}
        unknown = [c for c in choices if c not in column]
        if unknown:
            raise TableError(f"{unknown[0]!r} is not a candidate of this table")
        # A row with no error at all was evaluated in one context only (the last layer: its
        # suffixes are all empty): it has no suffix error to add.
        errors = [
            self.stderr[i][column[c]]
            for i, c in enumerate(choices)
            if any(e is not None for e in self.stderr[i])
        ]
        if any(e is None for e in errors):
            return None
        return math.sqrt(math.fsum(e * e for e in errors))

    def close_calls(self) -> list[CloseCall]:
        """The layers whose best and second-best entries the table cannot tell apart.

        A layer is listed when its two most accurate candidates differ by less than their
        combined standard error ``sqrt(se_best**2 + se_second**2)``. That is cautious: both
        entries were averaged over the same suffixes, which makes their difference less
        noisy than the two errors together. Layers with one candidate, or whose two best
        entries lack a standard error, are not listed (the table cannot say).
        """
        if self.stderr is None:
            return []
        calls = []
        for i, row in enumerate(self.accuracy):
            ranked = sorted((j for j, a in enumerate(row) if a is not None), key=lambda j: -row[j])
            if len(ranked) < 2:
                continue
            best, second = ranked[0], ranked[1]
            se_best, se_second = self.stderr[i][best], self.stderr[i][second]
            if se_best is None or se_second is None:
                continue
            gap = row[best] - row[second]
            noise = math.hypot(se_best, se_second)
            if gap < noise:
                calls.append(
                    CloseCall(
                        layer=i,
                        best=self.candidates[best],
                        best_accuracy=row[best],
                        best_stderr=se_best,
                        second=self.candidates[second],
                        second_accuracy=row[second],
                        second_stderr=se_second,
                        gap=gap,
                        noise=noise,
                    )
                )
        return calls

    @property
    def has_full_space(self) -> bool:
        """Whether ``space`` is a full spec (enough to build the supernet and networks)."""
        try:
            SearchSpace.from_dict(self.space)
        except SpaceError:
            return False
        return True

    def search_space(self) -> SearchSpace:
        """The table's :class:`SearchSpace`; :class:`TableError` if it only carries a name."""
        try:
            return SearchSpace.from_dict(self.space)
        except SpaceError as exc:
            if set(self.space) == {"name"}:
                raise TableError(
                    f"this table's space is only {self.space!r}; building a network needs the "
                    "full space spec"
                ) from None
            raise TableError(
                f"this table's space is not a full space spec ({exc}); building a network "
                "needs the full space spec"
            ) from None

    def to_csv(self) -> str:
        """The table as CSV for a spreadsheet: one header line, then one line per layer.

        Columns, left to right::

            layer, path, <candidate> ..., <kind>:<candidate> ... for each cost kind,
            stderr:<candidate> ... (only when the table has standard errors)

        ``layer`` counts from 0, ``path`` is the candidate the search chose there, the
        ``<candidate>`` columns hold the accuracy (a heatmap when colour-scaled), then one
        block of columns per cost kind (``macs:e3_k3``, ..., ``params:e3_k3``, ...,
        ``latency_ms:e3_k3``, ...), then the standard errors when the table has them
        (``stderr:e3_k3``, ...). Not-allowed entries are empty cells. The fixed parts'
        cost (``base_cost``) is not a per-layer value and is left out; it is in the JSON.
        """
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        kinds = self.cost_kinds
        extra = {k: self.cost[k] for k in kinds}
        if self.stderr is not None:
            extra["stderr"] = self.stderr
        writer.writerow(
            ["layer", "path", *self.candidates]
            + [f"{k}:{c}" for k in extra for c in self.candidates]
        )

        def cell(v: float | None) -> str:
            return "" if v is None else repr(v)

        for i, row in enumerate(self.accuracy):
            writer.writerow(
                [str(i), self.path[i], *(cell(v) for v in row)]
                + [cell(v) for m in extra.values() for v in m[i]]
            )
        return buf.getvalue()


def _dumps(d: dict[str, Any]) -> str:
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
