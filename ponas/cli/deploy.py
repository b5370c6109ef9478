"""``ponas deploy``: from a table and budgets to networks: the Pareto frontier against one
cost, the K best, or the best one, which it can build from the supernet's weights, fine-tune,
evaluate and export."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ponas.alternatives import constrained_frontier, top_networks
from ponas.cli.common import CommandError, format_list, note_line, set_options
from ponas.cli.flags import add_budget_flags, add_build_flags, add_json_flag, add_set_flag
from ponas.files import DEFAULT_FORMATS
from ponas.units import format_cost

BUDGET_FLAGS = {"macs": "--max-macs", "params": "--max-params", "latency_ms": "--max-latency-ms"}


def _budgets(args: argparse.Namespace, table: Any) -> dict[str, float]:
    """The budgets given as flags, parsed; a one-line error naming the flag."""
    from ponas.units import parse_budget

    budgets: dict[str, float] = {}
    for kind, flag in BUDGET_FLAGS.items():
        text = getattr(args, flag[2:].replace("-", "_"))
        if text is None:
            continue
        if kind == "latency_ms":
            text = text.strip().removesuffix("ms").removesuffix("MS").strip()
        try:
            budgets[kind] = parse_budget(text)
        except ValueError as exc:
            why = str(exc)
            if kind == "latency_ms":
                why = f"invalid budget {text!r}: expected milliseconds, e.g. 20 or 12.5"
            raise CommandError(f"{flag}: {why}") from None
    wants_latency = "latency_ms" in budgets or args.pareto == "latency_ms"
    if wants_latency and "latency_ms" not in table.cost_kinds:
        flag = "--pareto latency_ms" if args.pareto == "latency_ms" else "--max-latency-ms"
        raise CommandError(
            f"{flag}: this table has no latency; add --lut lut.json (from `ponas profile` of "
            "its space), or search with --lut"
        )
    return budgets


def _flags_text(message: str) -> str:
    """The solver's message with its budget names read as this command's flags."""
    for kind, flag in BUDGET_FLAGS.items():
        message = message.replace(f"max_{kind}=", f"{flag} ")
    return message


def _solve(table: Any, budgets: dict[str, float]) -> Any:
    from ponas.solve import Infeasible, solve

    try:
        return solve(table, budgets)
    except Infeasible as exc:
        raise CommandError(_flags_text(str(exc))) from None


def _top(table: Any, budgets: dict[str, float], k: int) -> list[Any]:
    from ponas.solve import Infeasible

    try:
        return top_networks(table, budgets, k)
    except Infeasible as exc:
        raise CommandError(_flags_text(str(exc))) from None


def _network_line(point: Any, kinds: list[str]) -> str:
    costs = ", ".join(format_cost(k, point.cost[k]) for k in kinds)
    return f"score {point.score:.4f}  {costs}  {' '.join(point.choices)}"


def _space_of(table: Any) -> Any:
    """What an ARCH.json's ``space`` holds for this table: its full spec, else its name."""
    return table.space if table.has_full_space else table.space["name"]


def _within(budgets: dict[str, float]) -> str:
    """`` within --max-macs 300M, ...`` (nothing without budgets)."""
    from ponas.units import format_budget

    if not budgets:
        return ""
    return " within " + ", ".join(
        f"{BUDGET_FLAGS[k]} {format_budget(v)}" for k, v in budgets.items()
    )


# ---- the command ---------------------------------------------------------------------------


def cmd_deploy(args: argparse.Namespace) -> int:
    """Check the flags and budgets against the table, then print the frontier (--pareto), the
    K best (--top), or the best network (built and exported with --export)."""
    if args.tensorboard and not args.export:
        raise CommandError(
            "--tensorboard needs --export DIR: only a built network has an accuracy to log"
        )
    if not args.export:
        for flag, given in (
            ("--finetune-epochs", args.finetune_epochs is not None),
            ("--supernet", args.supernet is not None),
            ("--formats", args.formats is not None),
            ("--set", bool(args.set)),
            ("--dataset-dir", args.dataset_dir is not None),
        ):
            if given:
                raise CommandError(
                    f"{flag} needs --export DIR: it only matters for a built network"
                )
    if args.top is not None and (args.top < 1 or args.pareto or args.export):
        raise CommandError(
            "--top K lists the K best networks (K >= 1) within the budgets; it goes without "
            "--pareto and --export"
        )
    table = _load_table(args)
    budgets = _budgets(args, table)
    if args.pareto:
        return deploy_frontier(args, table, budgets)
    return deploy_choose(args, table, budgets)


def _load_table(args: argparse.Namespace) -> Any:
    """--table, with --lut's latency added; --pareto must name one of its costs."""
    from ponas.table import AccuracyTable

    table = AccuracyTable.load(args.table)
    if args.lut:
        from ponas.cost import load_lut, with_latency

        try:
            table = with_latency(table, load_lut(args.lut))
        except ValueError as exc:
            raise CommandError(f"--lut {args.lut}: {exc}") from None
    if args.pareto and args.pareto not in table.cost_kinds:
        if args.pareto != "latency_ms":  # latency_ms: _budgets says how to add it
            raise CommandError(
                f"--pareto {args.pareto}: this table has costs {', '.join(table.cost_kinds)}"
            )
    return table


def deploy_frontier(args: argparse.Namespace, table: Any, budgets: dict[str, float]) -> int:
    """``--pareto COST``: every Pareto-optimal network within the budgets, cheapest first."""
    _solve(table, budgets)  # an infeasible budget: its message, not an empty list
    frontier = constrained_frontier(table, args.pareto, budgets)
    if args.json:
        print(json.dumps([p.to_dict() for p in frontier]))
        return 0
    print(
        f"{len(frontier)} Pareto-optimal networks (score against {args.pareto}){_within(budgets)}:"
    )
    for point in frontier:
        print(
            f"{format_cost(args.pareto, point.cost[args.pareto]):>14}  score {point.score:.4f}  "
            f"{' '.join(point.choices)}"
        )
    return 0


def deploy_choose(args: argparse.Namespace, table: Any, budgets: dict[str, float]) -> int:
    """The K best networks within the budgets (--top K), or the best one: its score, what the
    budgets cost it, and (with --export) what the built network measured and where it went."""
    if args.top is not None:
        found = _top(table, budgets, args.top)
        if args.json:
            print(json.dumps([{**p.to_dict(), "space": _space_of(table)} for p in found]))
            return 0
        print(f"the {len(found)} best networks{_within(budgets)}:")
        for rank, point in enumerate(found, 1):
            print(f"{rank:>3}. {_network_line(point, table.cost_kinds)}")
        return 0
    selection = _solve(table, budgets)
    result = {**selection.to_dict(), "space": _space_of(table)}
    if args.export:
        result.update(build_and_export(args, selection, budgets))
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"architecture: {' '.join(selection.choices)}")
    error = "" if selection.score_stderr is None else f" ± {selection.score_stderr:.4f}"
    # what the entries measure (SearchConfig.score): top-1 accuracies or likelihoods
    entries = "likelihoods" if table.meta.get("config", {}).get("score") == "likelihood" else None
    print(
        f"predicted score {selection.score:.4f}{error} (sum of table {entries or 'accuracies'}, "
        "a ranking score, not a test accuracy)"
    )
    print(
        f"score given up for the budgets: {selection.loss:.4f} (the best path's score minus "
        "this one's; JSON: loss)"
    )
    print("cost: " + ", ".join(format_cost(k, v) for k, v in selection.cost.items()))
    if "metrics" in result:
        m = result["metrics"]
        print(
            f"measured on the test split: top-1 {100 * m['top1']:.2f}%, top-5 {100 * m['top5']:.2f}%"
        )
        for fmt, path in result["files"].items():
            print(f"wrote {fmt}: {path}" + (" (checked)" if fmt != "model_card" else ""))
    return 0


def build_and_export(
    args: argparse.Namespace, selection: Any, budgets: dict[str, float]
) -> dict[str, Any]:
    """``--export DIR``: build ``selection`` with the supernet's weights (BatchNorm
    recalibrated, optionally fine-tuned), evaluate it and write every format, each checked;
    its ``metrics`` and ``files`` for the result."""
    say = note_line(args.quiet or args.json)
    if not args.supernet:
        beside = Path(args.table).parent / "supernet.pt"
        if not beside.exists():
            raise CommandError(
                f"--export needs --supernet supernet.pt (the weights to inherit); "
                f"none beside the table at {beside}"
            )
        args.supernet = str(beside)
    from ponas.deploy import specialize
    from ponas.export import check_formats, export_all

    try:  # before the build: a missing package should not cost a fine-tuning run
        formats = check_formats(format_list(args.formats or ",".join(DEFAULT_FORMATS)))
    except ValueError as exc:
        raise CommandError(f"--formats: {exc}") from None
    overrides: dict[str, Any] = {}
    if args.dataset_dir:
        overrides["dataset_dir"] = args.dataset_dir
    overrides.update(set_options(args.set))
    from ponas.progress import TqdmCallback
    from ponas.search import CallbackGroup
    from ponas.tracking import deploy_trackers

    params = {"table": args.table, "choices": " ".join(selection.choices), **budgets}
    args.finetune_epochs = args.finetune_epochs or 0
    params["finetune_epochs"] = args.finetune_epochs
    bars = CallbackGroup(
        TqdmCallback(quiet=args.quiet),
        *deploy_trackers(params, tensorboard=args.tensorboard),
    )
    say(
        f"building {' '.join(selection.choices)}: weights from {args.supernet}, "
        "BatchNorm recalibrated"
        + (f", {args.finetune_epochs} fine-tune epochs" if args.finetune_epochs else "")
    )
    try:
        model, metrics = specialize(
            args.supernet,
            selection.choices,
            overrides=overrides,
            finetune_epochs=args.finetune_epochs,
            callback=bars,
        )
        bars.done(None)  # the deployment's own MLflow run (if any) ends here
    finally:
        bars.close()
    say(f"exporting {', '.join(formats)} into {args.export}, each file checked")
    written = export_all(
        model,
        args.export,
        formats,
        metrics=metrics,
        cost=selection.cost,
        predicted_score=selection.score,
        budgets=budgets,
        progress=say,
    )
    return {
        "metrics": {k: metrics[k] for k in ("top1", "top5", "finetune_epochs")},
        "files": {k: str(v) for k, v in written.items()},
    }


# ---- the parser ----------------------------------------------------------------------------


def add_deploy_parser(sub: Any) -> None:
    p = sub.add_parser("deploy", help="choose (and build) the best network for a budget")
    p.add_argument("--table", required=True, help="table.json written by `ponas search`")
    add_budget_flags(p, "latency budget in ms (needs latency: --lut, or a table with it)")
    p.add_argument(
        "--lut", help="lut.json from `ponas profile`: the device's latency for this table's space"
    )
    p.add_argument(
        "--pareto",
        metavar="COST",
        help="print the whole frontier against COST (macs, params, latency_ms)",
    )
    add_json_flag(p)
    p.add_argument(
        "--supernet",
        help="with --export: supernet.pt to inherit weights from (default: beside --table)",
    )
    p.add_argument(
        "--export", metavar="DIR", help="build, evaluate and export the network into DIR"
    )
    add_build_flags(
        p,
        "with --export: fine-tune after inheriting (default 0)",
        "pt2: a torch.export program; torchscript: legacy, only when asked for",
    )
    p.add_argument(
        "--tensorboard",
        metavar="DIR",
        help="with --export: write the fine-tune loss and test accuracy as TensorBoard events",
    )
    p.add_argument(
        "--dataset-dir", help="dataset folder for fine-tuning and evaluation (cifar10, imagefolder)"
    )
    p.add_argument(
        "--top",
        type=int,
        metavar="K",
        help="list the K best networks within the budgets (best first), not only the best",
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no progress lines or bars on stderr")
    add_set_flag(p, "search setting for the build, e.g. --set finetune_lr=0.01")
    p.set_defaults(func=cmd_deploy)
