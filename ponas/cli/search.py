"""``ponas search`` and ``ponas plan``: run both stages and write the accuracy table (or
stage 2 again, to measure the entry noise), and what a search would cost before it runs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ponas.cli.common import CommandError, note, set_options
from ponas.cli.flags import add_json_flag
from ponas.cli.settings import (
    add_search_arguments,
    check_resume,
    print_config,
    resolved,
    run_flags,
    search_settings,
)


def _load_lut(path: str | None) -> dict[str, Any] | None:
    """``--lut``: read before any work, so a bad file fails at once."""
    from ponas.cost import load_lut

    return None if path is None else load_lut(path)


def _save_with_latency(table: Any, lut: dict[str, Any] | None, out: Path) -> None:
    """Rewrite ``out/table.json`` with the lookup table's latency (nothing without one)."""
    from ponas.cost import with_latency

    if lut is not None:
        with_latency(table, lut).save(out / "table.json")


def _check_lut_space(lut: dict[str, Any], space: Any) -> None:
    """``search --lut``: the lookup table must be of this space, checked before any training
    (the same check `deploy --lut` makes, on a table of this space's shape)."""
    from ponas.cost import with_latency
    from ponas.table import AccuracyTable

    rows = [
        [0.0 if c in space.allowed_candidates(i) else None for c in space.candidates]
        for i in range(space.num_layers)
    ]
    path = [space.allowed_candidates(i)[0] for i in range(space.num_layers)]
    with_latency(AccuracyTable.build(space, rows, path, {}), lut)


def cmd_search(args: argparse.Namespace) -> int:
    """Both stages into --out (table.json, supernet.pt, checkpoints), or --stage2-only."""
    import time

    from ponas.progress import TqdmCallback
    from ponas.search import CallbackGroup, Cancelled, run_search
    from ponas.tracking import search_trackers

    if args.stage2_only or args.supernet:
        return _stage2_only(args)
    space, overrides, out = search_settings(args)
    resolved_space, cfg = resolved(space, overrides)
    if args.print_config:
        print_config(space, resolved_space, cfg)
        return 0
    out = Path(out or f"runs/{Path(resolved_space.name).stem}")
    if not args.resume and not args.overwrite and (out / "table.json").exists():
        raise CommandError(
            f"{out} already holds a search; add --resume to continue it, --out DIR for a new "
            "folder, or --overwrite to replace it"
        )
    lut = _load_lut(args.lut)
    if lut is not None:
        try:
            _check_lut_space(lut, resolved_space)
        except ValueError as exc:
            raise CommandError(f"--lut {args.lut}: {exc}") from None
    if args.resume and check_resume(resolved_space, cfg, out, args.allow_changed_settings):
        print(f"{out}: search already complete; nothing to resume ({out / 'table.json'})")
        return 0
    # TensorBoard with --tensorboard, MLflow when MLFLOW_TRACKING_URI is set
    trackers = search_trackers(space, overrides, out, tensorboard=args.tensorboard)
    bars = CallbackGroup(TqdmCallback(quiet=args.quiet), *trackers)
    started = time.monotonic()
    try:
        table = run_search(space, overrides, out, bars, resume=args.resume)
    except Cancelled:
        print(
            f"search stopped; resume with: ponas search ... --out {out} --resume", file=sys.stderr
        )
        return 130
    finally:
        bars.close()
    _save_with_latency(table, lut, out)
    print(f"path: {' '.join(table.path)}")
    _print_noise(out)
    print(
        f"wrote {out / 'table.json'} and {out / 'supernet.pt'} (checkpoints in {out / 'checkpoints'})"
    )
    if lut is not None:
        print(f"latency from {args.lut} ({lut.get('device') or 'unnamed device'}) is in the table")
    if args.tensorboard:
        print(f"TensorBoard events in {args.tensorboard} (tensorboard --logdir {args.tensorboard})")
    print(f"took {_duration(time.monotonic() - started)}")
    return 0


def _duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``2 h 07 min``."""
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def _print_noise(out: Path) -> None:
    """The entry noise measured for this folder's supernet, when a noise.json is there;
    otherwise what the table's own standard errors say."""
    from ponas import noise
    from ponas.table import AccuracyTable

    doc = noise.load(out / noise.NOISE_FILE)
    if doc:
        print("entry noise (measured by ponas search --stage2-only):")
        for line in noise.summary_lines(doc):
            print(f"  {line}")
        return
    lines = noise.table_lines(AccuracyTable.load(out / "table.json"))
    if lines:
        print(
            f"entry noise seen from the table (the context draw only; the whole noise: "
            f"ponas search --stage2-only --supernet {out} --set stage2_seed=1 --out DIR):"
        )
        for line in lines:
            print(f"  {line}")


def _stage2_only(args: argparse.Namespace) -> int:
    """`ponas search --stage2-only --supernet PATH`: stage 2 again, and its entry noise
    against the search's own table (``OUT/noise.json``) when that table is there."""
    from ponas import noise
    from ponas.progress import TqdmCallback
    from ponas.search import Cancelled, run_stage2_only
    from ponas.table import AccuracyTable

    if not (args.stage2_only and args.supernet and args.out):
        raise CommandError("--stage2-only needs --supernet PATH and --out DIR (and no --preset)")
    if args.preset or args.cfg:
        raise CommandError(
            "--stage2-only takes the space and settings from --supernet; drop --preset/--cfg"
        )
    overrides = set_options(args.set)
    out = Path(args.out)
    bars = TqdmCallback(quiet=args.quiet)
    try:
        table = run_stage2_only(args.supernet, overrides, out, bars, resume=args.resume)
    except Cancelled:
        print(
            f"stopped; resume with: ponas search --stage2-only ... --out {out} --resume",
            file=sys.stderr,
        )
        return 130
    except ValueError as e:
        raise CommandError(str(e)) from None
    finally:
        bars.close()
    print(f"path: {' '.join(table.path)}")
    source = Path(args.supernet)
    first = (source if source.is_dir() else source.parent.parent) / "table.json"
    if first.is_file():
        doc = noise.measure(AccuracyTable.load(first), table)
        noise.save(doc, out / noise.NOISE_FILE)
        print(
            f"entry noise against {first} (stage2_seed {doc['stage2_seeds'][0]} vs {doc['stage2_seeds'][1]}):"
        )
        for line in noise.summary_lines(doc):
            print(f"  {line}")
        print(f"wrote {out / 'table.json'} and {out / noise.NOISE_FILE}")
    else:
        print(f"wrote {out / 'table.json'} (no table.json beside the supernet to compare with)")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    """Steps, images, memory and GPU-hours of the search these flags would run."""
    from ponas.plan import estimate

    space, overrides, _ = search_settings(args)
    resolved(space, overrides, data=False)  # a bad setting: the same error as search's
    ignored = [flag for flag, given in run_flags(args) if given]
    if ignored:
        note(
            f"plan: {', '.join(ignored)} change no figure (the plan is of the whole search "
            "with these settings)"
        )
    plan = estimate(
        space,
        overrides,
        train_images=args.train_images,
        images_per_s=args.images_per_s,
        device=args.device if args.device in ("cpu", "cuda") else None,
    )
    print(json.dumps(plan.to_dict(), indent=2) if args.json else plan.text())
    return 0


# ---- the parsers ---------------------------------------------------------------------------


def add_search_parser(sub: Any) -> None:
    p = sub.add_parser("search", help="run both stages and write the accuracy table")
    add_search_arguments(p, required=False)
    p.add_argument(
        "--stage2-only",
        action="store_true",
        help="stage 2 again on --supernet (e.g. --set stage2_seed=1): measures entry noise",
    )
    p.add_argument("--supernet", help="with --stage2-only: a search's folder or its stage1.pt")
    p.add_argument(
        "--print-config",
        action="store_true",
        help="print the space and every setting that would run (a search.yml), and stop",
    )
    p.set_defaults(func=cmd_search)


def add_plan_parser(sub: Any) -> None:
    p = sub.add_parser(
        "plan",
        help="steps, images, memory and GPU-hours of a search, before it runs",
        description="The flags of `ponas search` but --stage2-only, --supernet and "
        "--print-config (plan prints the plan); those that "
        "say where and how it runs (--out, --resume, --lut, ...) change no figure and are "
        "named in a note.",
    )
    add_search_arguments(p)
    p.add_argument(
        "--images-per-s",
        type=float,
        help="stage-1 training images/s on the target card (bench/stage1_throughput.py)",
    )
    p.add_argument(
        "--train-images",
        type=int,
        help="training images before the validation split (default: counted, or ImageNet-1k)",
    )
    add_json_flag(p)
    p.set_defaults(func=cmd_plan)
