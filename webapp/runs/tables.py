"""A run's accuracy table, rebuilt from the database: the one source of what a run serves.

The ``ponas-table/1`` dict comes from the run's :class:`TableEntry` rows (one per scored
candidate, written by its task) plus what the run stores next to them (space spec and base
cost after stage 1, the chosen path layer by layer, meta at the end). The ``table.json`` a
search also writes into the artifact store is that table as a file, for ``ponas deploy``
elsewhere; the web app never reads it back. Parsed tables are kept in a small in-process LRU
keyed by (run id, table version), so ``preview`` and ``pareto`` cost one query and the solver.
"""

from __future__ import annotations

from collections import OrderedDict
from threading import Lock
from typing import Any

from ponas import noise
from ponas.table import FORMAT, AccuracyTable, TableError
from webapp.runs.models import DeviceProfile, SearchRun, TableEntry

CACHE_SIZE = 64
_cache: OrderedDict[tuple[int, str, int | None], AccuracyTable] = OrderedDict()
_lock = Lock()


def cost_tables(space: dict[str, Any]) -> tuple[dict[str, list], dict[str, float]]:
    """``(cost, base_cost)`` of a space spec, computed by the ponas cost model."""
    from ponas.cost import cost_tables as compute
    from ponas.space import SearchSpace

    return compute(SearchSpace.from_dict(space))


def table_dict(run: SearchRun) -> dict[str, Any]:
    """The ``ponas-table/1`` dict of a finished run, from its rows (not from table.json)."""
    space = run.space
    candidates = _candidates(space)
    n_layers = len(run.path)
    column = {c: j for j, c in enumerate(candidates)}

    def empty() -> list[list[Any]]:
        return [[None] * len(candidates) for _ in range(n_layers)]

    accuracy, macs, params, latency, stderr = empty(), empty(), empty(), empty(), empty()
    has_latency = has_stderr = False
    rows = TableEntry.objects.filter(run=run).values_list(
        "layer", "candidate", "accuracy", "macs", "params", "latency_ms", "stderr"
    )
    for layer, cand, acc, m, p, lat, err in rows:
        j = column[cand]
        accuracy[layer][j], macs[layer][j], params[layer][j] = acc, m, p
        if lat is not None:
            latency[layer][j], has_latency = lat, True
        if err is not None:
            stderr[layer][j], has_stderr = err, True
    cost = {"macs": macs, "params": params, **({"latency_ms": latency} if has_latency else {})}
    return {
        "format": FORMAT,
        "space": space,
        "candidates": candidates,
        "accuracy": accuracy,
        "cost": cost,
        "base_cost": run.base_cost,
        **({"stderr": stderr} if has_stderr else {}),
        "path": list(run.path),
        "meta": run.table_meta or {},
    }


def _candidates(space: dict[str, Any]) -> list[str]:
    from ponas.space import SearchSpace

    return list(SearchSpace.from_dict(space).candidates)


def accuracy_table(run: SearchRun, profile: DeviceProfile | None = None) -> AccuracyTable:
    """The run's table as an :class:`AccuracyTable`, with the latency of a device ``profile``
    (a succeeded one of this run) when given; cached per (run, table version, profile)."""
    key = (run.pk, run.finished.isoformat() if run.finished else "", profile and profile.pk)
    with _lock:
        table = _cache.get(key)
        if table is not None:
            _cache.move_to_end(key)
            return table
    if profile is None:
        table = AccuracyTable.from_dict(table_dict(run))
    else:
        from ponas.cost import with_latency

        table = with_latency(accuracy_table(run), profile.lut)
    with _lock:
        _cache[key] = table
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return table


def store_table(run: SearchRun, table: AccuracyTable, worker: str = "") -> None:
    """Record a table computed elsewhere (an imported table; tests and benches) as the run's
    result: its cells become the run's rows, and its space, base cost, path and meta go on the
    run. Rows already recorded keep their values. A search records its rows as it scores them
    and never calls this."""
    entries = [
        TableEntry(
            run=run,
            layer=i,
            candidate=cand,
            accuracy=acc,
            stderr=table.stderr[i][j] if table.stderr is not None else None,
            macs=table.cost["macs"][i][j],
            params=table.cost["params"][i][j],
            latency_ms=table.cost["latency_ms"][i][j] if "latency_ms" in table.cost else None,
            worker=worker,
        )
        for i, row in enumerate(table.accuracy)
        for j, (cand, acc) in enumerate(zip(table.candidates, row, strict=True))
        if acc is not None
    ]
    TableEntry.objects.bulk_create(entries, ignore_conflicts=True)
    run.space = table.space
    run.base_cost = table.base_cost
    run.path = table.path
    run.table_meta = table.meta
    run.save(update_fields=["space", "base_cost", "path", "table_meta"])


def fidelity(run: SearchRun) -> dict[str, Any]:
    """What one entry of a finished run's table is and how certain it is, for the run page.

    ``score``: what an entry measures (the search's ``score`` setting: accuracy, the default
    and what tables before that setting hold, or likelihood);
    ``suffixes``: how many sampled suffixes each entry is averaged over (the search's
    ``suffix_samples``, from the table's meta, else the run's settings; ``None`` if neither
    says); ``validation``: the table's ``meta.validation`` (``images``, ``drawn``, ...);
    ``has_stderr``: whether the table records standard errors; ``close_calls``: the layers
    whose best and second-best entries are within their combined standard error;
    ``noise_rows``: per layer the row's spread against its entries' context error
    (:func:`ponas.noise.table_rows`), and ``budget``, the ratio within which a row separates
    its candidates. ``None``
    when the stored rows do not make a valid table (the API's table endpoint says why).
    """
    try:
        table = accuracy_table(run)
    except TableError:
        return None
    config = table.meta.get("config")
    suffixes = config.get("suffix_samples") if isinstance(config, dict) else None
    if suffixes is None:
        suffixes = _run_setting(run, "suffix_samples")
    validation = table.meta.get("validation")
    score = config.get("score") if isinstance(config, dict) else None
    return {
        "score": score or "accuracy",
        "suffixes": suffixes,
        "validation": validation if isinstance(validation, dict) else {},
        "has_stderr": table.stderr is not None,
        "close_calls": table.close_calls(),
        "noise_rows": noise.table_rows(table),
        "budget": noise.BUDGET,
    }


def _run_setting(run: SearchRun, key: str) -> Any:
    """One of the run's search settings (its preset's, with the run's overrides), or None when
    the preset or the overrides no longer resolve (a preset renamed since the run)."""
    from ponas.search.config import resolve

    try:
        return getattr(
            resolve(run.preset, {key: run.config[key]} if key in run.config else {})[1], key
        )
    except (ValueError, KeyError, TypeError, OSError):
        return None
