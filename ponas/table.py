"""The accuracy table: what a search produces and what ``ponas deploy`` reads.

:class:`AccuracyTable` holds one ``ponas-table/1`` file (the format and its checks are
:mod:`ponas.table_format`): built from a search, loaded and saved, read (best path, standard
errors of a score, the layers it cannot decide) and written as CSV for a spreadsheet.

The file needs nothing else to be deployed from: :meth:`AccuracyTable.from_dict` checks all of
it and says exactly what is wrong.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ponas.cost import cost_tables
from ponas.files import atomic_write_text
from ponas.space import SearchSpace, SpaceError
from ponas.table_format import (
    COST_KINDS,
    FORMAT,
    REQUIRED_COST_KINDS,
    Matrix,
    TableError,
    dumps,
    validate,
)

__all__ = [
    "COST_KINDS",
    "FORMAT",
    "REQUIRED_COST_KINDS",
    "AccuracyTable",
    "CloseCall",
    "Matrix",
    "TableError",
]


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
        fields = validate({"format": FORMAT, **self._fields()})
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
        return cls(**validate(d))

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
        text = dumps(self.to_dict())  # serialize first: a bad value fails before any I/O
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
