"""The whole search end to end (stage 1, then stage 2 layer by layer) and its outputs:
``table.json`` and ``supernet.pt``."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ponas.network.bundle import versions
from ponas.search.callbacks import SearchCallback, reporting_failures
from ponas.search.checkpoint import latest_checkpoint, load_checkpoint, save_supernet, stage2_state
from ponas.search.context import Context, make_context
from ponas.search.stage1 import train_supernet
from ponas.search.stage2 import search_layer
from ponas.space import SearchSpace
from ponas.supernet import Supernet


def run_search(
    space: SearchSpace | str,
    overrides: dict[str, Any] | None = None,
    out: str | Path = "runs/search",
    callback: SearchCallback | None = None,
    resume: bool = False,
):
    """Both stages end to end; writes ``table.json``, ``supernet.pt`` and checkpoints.

    Returns the :class:`ponas.table.AccuracyTable`. With ``resume``, continues from the last
    checkpoint in ``out/checkpoints``. Raises :class:`Cancelled` when the callback asks to stop.
    """
    overrides = dict(overrides or {})
    ctx = make_context(space, overrides, out, callback)
    ctx.out.mkdir(parents=True, exist_ok=True)
    return reporting_failures(ctx.callback, lambda: _both_stages(ctx, overrides, resume))


def _both_stages(ctx: Context, overrides: dict[str, Any], resume: bool):
    ckpt = latest_checkpoint(ctx.out, "stage2.pt") if resume else None
    if ckpt is None:
        ckpt = train_supernet(ctx, overrides, resume)
    return _stage2(ctx, ckpt)


def run_stage2_only(
    supernet: str | Path,
    overrides: dict[str, Any] | None = None,
    out: str | Path = "runs/stage2",
    callback: SearchCallback | None = None,
    resume: bool = False,
):
    """Stage 2 again on the supernet that a search's stage 1 trained, into another ``out``.

    ``supernet``: a search's folder or its ``checkpoints/stage1.pt``. The settings are that
    search's, with ``overrides`` on top (e.g. ``stage2_seed``: another draw of suffixes,
    fine-tune batches and validation subset, to measure entry noise). Stage-1 settings in
    ``overrides`` change nothing. Returns the new :class:`ponas.table.AccuracyTable`.
    """
    source = Path(supernet)
    ckpt_path = source / "checkpoints" / "stage1.pt" if source.is_dir() else source
    if not ckpt_path.is_file():
        raise ValueError(
            f"--supernet {supernet}: no stage-1 checkpoint there; give a search's folder or "
            "its checkpoints/stage1.pt (supernet.pt holds weights stage 2 already fine-tuned)"
        )
    ckpt = load_checkpoint(ckpt_path)
    if ckpt.get("stage") != "stage1" or ckpt["epoch"] + 1 < ckpt["config"]["epochs"]:
        raise ValueError(f"{ckpt_path}: not a finished stage-1 checkpoint")
    if Path(out).resolve() == ckpt_path.parent.parent.resolve():
        raise ValueError(f"--out {out} is the supernet's own search folder; give another one")
    space = SearchSpace.from_dict(ckpt["space"])
    ctx = make_context(space, {**ckpt["config"], **(overrides or {})}, out, callback)
    ctx.out.mkdir(parents=True, exist_ok=True)
    again = latest_checkpoint(ctx.out, "stage2.pt") if resume else None
    return reporting_failures(ctx.callback, lambda: _stage2(ctx, again or ckpt))


def _stage2(ctx: Context, ckpt: dict[str, Any]):
    supernet = ctx.prepare(Supernet(ctx.space))
    supernet.load_state_dict(ckpt["model"])
    path, rows = list(ckpt.get("path", [])), list(ckpt.get("rows", []))
    stderr = list(ckpt.get("stderr", [[None] * len(r) for r in rows]))
    n = ctx.space.num_layers
    # stage 2 progress counts (layer, candidate) fine-tunes
    ctx.callback.stage_started(
        "stage2", sum(len(ctx.space.allowed_candidates(i)) for i in range(n))
    )
    for layer in range(len(path), n):
        ctx.check_stop()
        row, best, errors = search_layer(ctx, supernet, layer, path)
        rows.append(row)
        stderr.append(errors)
        path.append(best)
        ctx.callback.row_done(layer, row, best)
        state = stage2_state(layer, supernet, path, rows, stderr, ctx.validation[1])
        ctx.save_checkpoint("stage2.pt", state)
    table = finalize(ctx.out)
    ctx.callback.done(table)
    return table


def finalize(out: str | Path):
    """Write ``table.json`` and ``supernet.pt`` from the last stage-2 checkpoint in ``out``.

    Used by :func:`run_search` and by workers that fanned a search's layers out.
    """
    from ponas.table import AccuracyTable

    out = Path(out)
    ckpt = load_checkpoint(out / "checkpoints" / "stage2.pt")
    space = SearchSpace.from_dict(ckpt["space"])
    if len(ckpt["path"]) != space.num_layers:
        raise ValueError(
            f"{out}: stage 2 has finished {len(ckpt['path'])} of {space.num_layers} layers"
        )
    cfg = ckpt["config"]
    meta = {
        "dataset": cfg["dataset"],
        "seed": cfg["seed"],
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": versions(),
        "config": cfg,
        **({"validation": ckpt["validation"]} if ckpt.get("validation") else {}),
    }
    stderr = ckpt.get("stderr")
    if stderr is not None and all(e is None for row in stderr for e in row):
        stderr = None  # one evaluation suffix (or an older checkpoint): nothing to show
    table = AccuracyTable.build(space, ckpt["rows"], ckpt["path"], meta, stderr=stderr)
    supernet = Supernet(space)
    supernet.load_state_dict(ckpt["model"])
    save_supernet(out / "supernet.pt", supernet, ckpt["path"], meta)
    table.save(out / "table.json")
    return table
