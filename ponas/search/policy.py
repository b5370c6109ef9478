"""How a table is built, apart from how an entry is measured (torch-free).

Building an accuracy table is one algorithm over an *evaluator*: for layer ``l``, with the
path chosen so far (or a random context), draw ``k`` contexts shared by every candidate of
the row, score each candidate once per context, average, keep the best. What "score" means
is the evaluator's business: the supernet's fine-tune-and-validate
(:mod:`ponas.search.stage2`) or a lookup in an external benchmark
(:mod:`ponas.benchmarks.macro`). Stage 2 draws its evaluation suffixes with
:func:`draw_suffixes` and turns values into entries with :func:`entry`, the same functions
:func:`build_table` uses, so a benchmark table is built by the supernet's policy.

Contexts are drawn **without replacement**, and enumerated when a layer has at most ``k``
distinct suffixes (near the output there are few: drawing 4 of 3 with replacement repeats
one and counts it twice). A row whose contexts are all the same network (the last layer:
every suffix is empty) has no context error to report: its stderr is ``None``, not 0.
"""

from __future__ import annotations

import itertools
import math
import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

CONTEXTS = ("progressive", "random")


def _count(allowed: Sequence[Sequence[str]]) -> int:
    return math.prod(len(a) for a in allowed)


def draw_paths(
    rng: random.Random, allowed: Sequence[Sequence[str]], k: int, replace: bool = False
) -> list[list[str]]:
    """``k`` paths through ``allowed`` (one list of candidates per layer), uniformly.

    Without replacement the paths are distinct; when there are at most ``k`` of them, all
    are returned in a fixed order. ``allowed == []`` gives one empty path.
    """
    if not allowed:
        return [[]]
    total = _count(allowed)
    if replace:
        return [[rng.choice(list(a)) for a in allowed] for _ in range(k)]
    if total <= k:
        return [list(p) for p in itertools.product(*allowed)]
    seen: set[tuple[str, ...]] = set()
    out: list[list[str]] = []
    while len(out) < k:
        path = tuple(rng.choice(list(a)) for a in allowed)
        if path not in seen:
            seen.add(path)
            out.append(list(path))
    return out


def draw_suffixes(
    rng: random.Random,
    allowed: Sequence[Sequence[str]],
    layer: int,
    k: int,
    replace: bool = False,
) -> list[list[str]]:
    """The evaluation suffixes of ``layer``: paths through layers ``layer+1 ...``."""
    return draw_paths(rng, allowed[layer + 1 :], k, replace)


@dataclass(frozen=True)
class Context:
    """What a row's candidates share in one evaluation: the layers before and after."""

    prefix: tuple[str, ...]
    suffix: tuple[str, ...]

    def network(self, candidate: str) -> list[str]:
        return [*self.prefix, candidate, *self.suffix]


def draw_contexts(
    rng: random.Random,
    allowed: Sequence[Sequence[str]],
    layer: int,
    chosen: Sequence[str],
    k: int,
    context: str = "progressive",
    replace: bool = False,
) -> list[Context]:
    """The ``k`` contexts of ``layer``'s row, shared by its candidates.

    ``progressive``: the prefix is the path chosen so far and the suffix is drawn.
    ``random``: prefix and suffix are both drawn (prefix and suffix as one path, so a
    context is never drawn twice without replacement).
    """
    if context not in CONTEXTS:
        raise ValueError(f"context {context!r}: expected one of {', '.join(CONTEXTS)}")
    if context == "progressive":
        return [
            Context(tuple(chosen), tuple(s)) for s in draw_suffixes(rng, allowed, layer, k, replace)
        ]
    around = [*allowed[:layer], *allowed[layer + 1 :]]
    return [
        Context(tuple(p[:layer]), tuple(p[layer:])) for p in draw_paths(rng, around, k, replace)
    ]


def entry(values: Sequence[float], distinct: int | None = None) -> tuple[float, float | None]:
    """A table entry from one value per context: the mean, and its standard error.

    The error is ``None`` where it would say nothing: one value, or (``distinct``) contexts
    that are all the same network, whose spread is no error of the context draw.
    """
    n = len(values)
    mean = sum(values) / n
    if n < 2 or (distinct is not None and distinct < 2):
        return mean, None
    return mean, statistics.stdev(values) / math.sqrt(n)


class Evaluator:
    """Scores a layer's candidates in given contexts: what "score" means is the subclass's.

    :func:`build_row` calls, for one row: :meth:`begin_row` once with the row's contexts,
    then for each allowed candidate :meth:`evaluate` and :meth:`entry_done` (with the row so
    far), then :meth:`end_row` with the chosen candidate. A stateless evaluator (a lookup in
    a benchmark) implements :meth:`evaluate` alone; a stateful one (the supernet: every
    candidate fine-tuned from the same weights, the winner's weights carried on) the rest.
    """

    def begin_row(self, layer: int, contexts: Sequence[Context]) -> None:
        """A row starts; ``contexts`` are the ones its candidates share."""

    def evaluate(self, layer: int, candidate: str, contexts: Sequence[Context]) -> list[float]:
        """One score per context (the network ``context.network(candidate)``)."""
        raise NotImplementedError

    def entry_done(self, layer: int, candidate: str, row: Sequence[float | None]) -> None:
        """``candidate``'s entry is in ``row`` (the row so far, in column order)."""

    def end_row(self, layer: int, best: str) -> None:
        """The row is complete and ``best`` was chosen."""


@dataclass
class Row:
    """One row of a table as :func:`build_row` makes it: entries (``None`` for a candidate
    not allowed), their standard errors, and the candidate chosen."""

    values: list[float | None]
    stderr: list[float | None]
    best: str


def distinct(contexts: Sequence[Context]) -> int:
    """How many different networks-around-the-candidate ``contexts`` hold."""
    return len(set(contexts))


def build_row(
    layer: int,
    candidates: Sequence[str],
    allowed: Sequence[Sequence[str]],
    evaluator: Evaluator,
    contexts: Sequence[Context],
    choose: Callable[[int, list[float | None]], str] | None = None,
    each: Callable[[str], Sequence[Context]] | None = None,
) -> Row:
    """One row of the table through ``evaluator``: every allowed candidate of ``layer``
    scored in the shared ``contexts``, an entry (mean and stderr, :func:`entry`) each, and
    the best chosen (``choose(layer, row)``; the highest entry by default).

    This is the one place a row is made: the supernet search (:mod:`ponas.search.stage2`)
    and the benchmark tables (:func:`build_table`) both call it. ``each(candidate)`` gives a
    candidate contexts of its own instead (a baseline: shared contexts are never worse).
    """
    evaluator.begin_row(layer, contexts)
    row: list[float | None] = [None] * len(candidates)
    err: list[float | None] = [None] * len(candidates)
    for cand in allowed[layer]:
        own = contexts if each is None else each(cand)
        j = candidates.index(cand)
        row[j], err[j] = entry(evaluator.evaluate(layer, cand, own), distinct(own))
        evaluator.entry_done(layer, cand, row)
    if choose is not None:
        best = choose(layer, row)
    else:
        best = max(allowed[layer], key=lambda c: row[candidates.index(c)])
    evaluator.end_row(layer, best)
    return Row(row, err, best)


@dataclass
class BuiltTable:
    """What :func:`build_table` returns: rows (``None`` for a candidate not allowed), the
    entries' standard errors, and the path of each row's best."""

    rows: list[list[float | None]]
    stderr: list[list[float | None]]
    path: list[str]


def build_table(
    candidates: Sequence[str],
    allowed: Sequence[Sequence[str]],
    evaluator: Evaluator,
    k: int,
    rng: random.Random,
    context: str = "progressive",
    replace: bool = False,
    choose: Callable[[int, list[float | None]], str] | None = None,
    shared: bool = True,
) -> BuiltTable:
    """Build a table layer by layer through ``evaluator`` (:func:`build_row` per layer).

    ``candidates`` are the table's columns and ``allowed[l]`` those allowed at layer ``l``;
    ``choose(layer, row)`` picks a row's best (the highest score by default; the supernet
    search breaks ties by cost, :func:`ponas.search.stage2.choose_best`). The contexts of
    each row are drawn from ``rng`` by :func:`draw_contexts` (``context``, ``replace``);
    ``shared=False`` draws each candidate's apart.
    """
    built = BuiltTable([], [], [])
    for layer in range(len(allowed)):
        path = built.path

        def draw(_cand: str = "", layer: int = layer, path: list[str] = path) -> list[Context]:
            return draw_contexts(rng, allowed, layer, path, k, context, replace)

        contexts = draw()
        row = build_row(
            layer, candidates, allowed, evaluator, contexts, choose, None if shared else draw
        )
        built.rows.append(row.values)
        built.stderr.append(row.stderr)
        built.path.append(row.best)
    return built
