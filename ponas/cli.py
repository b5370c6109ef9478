"""The ``ponas`` command: describe, search, deploy, evaluate, convert, profile, and ``remote``
(the same jobs against a server: ponas/remote_commands.py).

Every command prints a one-line ``ponas: error: ...`` and exits with status 2 on bad input
(unknown model, malformed file, impossible budget), never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ponas.files import DEFAULT_FORMATS, FORMATS
from ponas.units import format_cost, format_count

EXIT_USAGE = 2


class CommandError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def _note(text: str) -> None:
    """One line to stderr about something done differently from what was asked."""
    print(f"ponas: note: {text}", file=sys.stderr)


# ---- describe ------------------------------------------------------------------------------


def cmd_describe(args: argparse.Namespace) -> int:
    from ponas.cost import base_cost, candidate_cost
    from ponas.network import resolve_model

    model, _ = resolve_model(args.model)
    space = model.space
    base = base_cost(space)
    rows = []
    total_macs, total_params = base.macs, base.params
    for layer, name in zip(space.layers, model.choices, strict=True):
        c = candidate_cost(space, layer.index, name)
        total_macs += c.macs
        total_params += c.params
        rows.append(
            {
                "layer": layer.index,
                "choice": name,
                "in": layer.in_channels,
                "out": layer.out_channels,
                "stride": layer.stride,
                "size": layer.in_size,
                "macs": c.macs,
                "params": c.params,
            }
        )
    if args.json:
        print(
            json.dumps(
                {
                    "model": args.model,
                    "space": space.name,
                    "macs": total_macs,
                    "params": total_params,
                    "choices": list(model.choices),
                    "base": {"macs": base.macs, "params": base.params},
                    "layers": rows,
                }
            )
        )
        return 0
    print(f"{args.model}: {space.name} space, input {space.input_size}x{space.input_size}")
    print(
        f"{'layer':>5}  {'choice':<10} {'in':>5} {'out':>5} {'stride':>6} {'size':>5} {'MACs':>9} {'params':>9}"
    )
    for r in rows:
        print(
            f"{r['layer']:>5}  {r['choice']:<10} {r['in']:>5} {r['out']:>5} {r['stride']:>6} "
            f"{r['size']:>5} {format_count(r['macs']):>9} {format_count(r['params']):>9}"
        )
    print(
        "fixed parts (stem, first block, head): "
        f"{format_cost('macs', base.macs)}, {format_cost('params', base.params)}"
    )
    print(f"total: {format_cost('macs', total_macs)}, {format_cost('params', total_params)}")
    return 0


# ---- profile -------------------------------------------------------------------------------


def cmd_profile(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from ponas.cost import prediction_quality, profile_latency
    from ponas.files import atomic_write_text
    from ponas.space import load_space

    space = load_space(args.space)
    if args.input_size:
        space = space.replace(input_size=args.input_size)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise CommandError(
            "--device cuda: no CUDA device is available on this machine; use --device cpu"
        )
    if args.batch < 1:
        raise CommandError(f"--batch must be at least 1, got {args.batch}")
    if args.threads is not None:
        if args.threads < 1:
            raise CommandError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    bar = tqdm(desc="timing blocks in context, then whole networks", unit="pass", file=sys.stderr)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    lut = profile_latency(
        space,
        args.device,
        args.batch,
        args.warmup,
        args.repeats,
        progress,
        clock=args.clock,
        check=args.check,
    )
    bar.close()
    checks = lut.get("check", [])
    lut["quality"] = quality = prediction_quality(checks)
    atomic_write_text(args.out, json.dumps(lut, indent=1))
    print(f"latency table for {space.name} on {lut['device']} (batch {args.batch}) -> {args.out}")
    print(
        f"fixed parts: {lut['base_ms']:.3f} ms; whole-forward overhead fitted on "
        f"{lut['fit']['networks']} networks: {lut['overhead_ms']:+.3f} ms, blocks x "
        f"{lut['scale']:.3f}"
    )
    for row in checks:
        print(
            f"random arch: predicted {row['predicted_ms']:.2f} ms, measured {row['measured_ms']:.2f} ms, "
            f"error {row['error_pct']:+.1f}%"
        )
    if quality:
        plain = lut["plain"]
        n = plain["threads"]
        threads = f"{n} thread{'s' if n > 1 else ''}, " if n else ""
        print(
            f"over {len(checks)} random networks, each timed whole ({threads}batch "
            f"{plain['batch']}, median of {plain['repeats']} after {plain['warmup']} warm-up, "
            f"{plain['clock']} clock): mean absolute error {quality['mean_abs_error_pct']:.1f}%, "
            f"bias (mean signed error) {quality['bias_pct']:+.1f}%, rank correlation (Spearman) "
            f"{quality['rank_correlation']:.3f}"
        )
    return 0


# ---- evaluate ------------------------------------------------------------------------------


def load_yaml_config(path: str, allowed: set[str] | None = None) -> dict[str, Any]:
    import yaml

    p = Path(path)
    try:
        cfg = yaml.safe_load(p.read_text()) or {}
    except FileNotFoundError:
        raise CommandError(f"{p}: no such config file") from None
    except yaml.YAMLError as exc:
        raise CommandError(f"{p}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(cfg, dict):
        raise CommandError(f"{p}: expected a mapping of config keys, got {type(cfg).__name__}")
    if allowed is not None:
        unknown = sorted(set(cfg) - allowed)
        if unknown:
            raise CommandError(f"{p}: unknown config keys {unknown}; allowed: {sorted(allowed)}")
    return cfg


def cmd_evaluate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ponas.evaluate import CONFIG_KEYS, evaluate_pretrained
    from ponas.network import WeightsError

    cfg = load_yaml_config(args.cfg, CONFIG_KEYS)
    bars: list[tqdm] = []  # opened once the images are counted: errors before print alone

    def progress(done: int, total: int) -> None:
        if not bars:
            bars.append(tqdm(total=total, desc="evaluating", unit="img", file=sys.stderr))
        bars[0].update(done - bars[0].n)

    try:
        result = evaluate_pretrained(cfg, args.model, args.pretrain, progress, note=_note)
    except WeightsError as exc:
        raise CommandError(f"--pretrain {exc}") from None
    finally:
        for bar in bars:
            bar.close()
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"top-1 {100 * result['top1']:.2f}%  top-5 {100 * result['top5']:.2f}%  "
        f"({result['examples']} images)"
    )
    print(
        f"MACs {format_count(result['macs'])}  params {format_count(result['params'])}  "
        f"latency {result['latency_ms']:.2f} ms (batch 1, {result['device']}, median)"
    )
    return 0


# ---- convert -------------------------------------------------------------------------------


def cmd_convert(args: argparse.Namespace) -> int:
    from ponas.export import convert_weights
    from ponas.network import WeightsError

    try:
        net, out = convert_weights(args.src, args.dst, args.to, args.model)
    except WeightsError as exc:
        raise CommandError(str(exc)) from None
    what = "a bundle" if args.to == "ponas" else "a state dict in the reference's layout"
    print(f"wrote {what}: {out} ({net.space.name} space, {' '.join(net.choices)})")
    return 0


# ---- search --------------------------------------------------------------------------------


def _parse_value(text: str):
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _set_options(items: list[str] | None) -> dict[str, Any]:
    """``--set KEY=VALUE`` options as settings (values read as YAML: 30, 0.1, true, text)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise CommandError(f"--set {item!r}: expected KEY=VALUE, e.g. --set epochs=30")
        out[key.strip()] = _parse_value(value)
    return out


def _load_lut(path: str | None) -> dict[str, Any] | None:
    """``--lut``: read before any work, so a bad file fails at once."""
    from ponas.cost import load_lut

    return None if path is None else load_lut(path)


def _save_with_latency(table: Any, lut: dict[str, Any] | None, out: Path) -> None:
    """Rewrite ``out/table.json`` with the lookup table's latency (nothing without one)."""
    from ponas.cost import with_latency

    if lut is not None:
        with_latency(table, lut).save(out / "table.json")


def _search_settings(args: argparse.Namespace) -> tuple[Any, dict[str, Any], Any]:
    """``(space, overrides, out)`` from --preset or --cfg and the setting flags."""
    overrides: dict[str, Any] = {}
    space: Any = args.preset
    out = args.out
    if args.cfg:
        cfg = load_yaml_config(args.cfg)
        space = cfg.pop("space", None) or cfg.pop("preset", None) or space
        cfg.pop("preset", None)
        if isinstance(space, dict):
            from ponas.space import SearchSpace

            space = SearchSpace.from_dict(space)
        out = out or cfg.pop("out", None)
        cfg.pop("out", None)
        overrides.update(cfg.pop("search", None) or {})
        overrides.update(cfg)
    if space is None:
        raise CommandError(
            "give --preset NAME or --cfg search.yml (with a 'preset' or 'space' key)"
        )
    for flag in ("epochs", "seed", "device", "dataset", "dataset_dir"):
        if getattr(args, flag) is not None:
            overrides[flag] = getattr(args, flag)
    overrides.update(_set_options(args.set))
    return space, overrides, out


def cmd_search(args: argparse.Namespace) -> int:
    from ponas.progress import TqdmCallback
    from ponas.search import CallbackGroup, Cancelled, run_search
    from ponas.tracking import search_trackers

    if args.stage2_only or args.supernet:
        return _stage2_only(args)
    space, overrides, out = _search_settings(args)
    name = space if isinstance(space, str) else space.name
    out = Path(out or f"runs/{Path(name).stem}")
    if not args.resume and not args.overwrite and (out / "table.json").exists():
        raise CommandError(
            f"{out} already holds a search; add --resume to continue it, --out DIR for a new "
            "folder, or --overwrite to replace it"
        )
    lut = _load_lut(args.lut)
    # TensorBoard with --tensorboard, MLflow when MLFLOW_TRACKING_URI is set
    trackers = search_trackers(space, overrides, out, tensorboard=args.tensorboard)
    bars = CallbackGroup(TqdmCallback(), *trackers)
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
    return 0


def _print_noise(out: Path) -> None:
    """The entry noise measured for this folder's supernet, when a noise.json is there."""
    from ponas import noise

    doc = noise.load(out / noise.NOISE_FILE)
    if doc:
        print("entry noise (measured by ponas search --stage2-only):")
        for line in noise.summary_lines(doc):
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
    overrides = _set_options(args.set)
    out = Path(args.out)
    bars = TqdmCallback()
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
    from ponas.plan import estimate

    space, overrides, _ = _search_settings(args)
    plan = estimate(
        space,
        overrides,
        train_images=args.train_images,
        images_per_s=args.images_per_s,
        device=args.device if args.device in ("cpu", "cuda") else None,
    )
    print(json.dumps(plan.to_dict(), indent=2) if args.json else plan.text())
    return 0


# ---- deploy --------------------------------------------------------------------------------


def cmd_deploy(args: argparse.Namespace) -> int:
    from ponas.solve import pareto_frontier, solve
    from ponas.table import AccuracyTable
    from ponas.units import parse_budget

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
    table = AccuracyTable.load(args.table)
    if args.lut:
        from ponas.cost import load_lut, with_latency

        table = with_latency(table, load_lut(args.lut))
    if args.pareto:
        if args.pareto not in table.cost_kinds:
            raise CommandError(
                f"--pareto {args.pareto}: this table has costs {', '.join(table.cost_kinds)}"
            )
        frontier = pareto_frontier(table, args.pareto)
        if args.json:
            print(json.dumps([p.to_dict() for p in frontier]))
            return 0
        print(f"{len(frontier)} Pareto-optimal networks (score against {args.pareto}):")
        for point in frontier:
            print(
                f"{format_cost(args.pareto, point.cost[args.pareto]):>14}  score {point.score:.4f}  "
                f"{' '.join(point.choices)}"
            )
        return 0
    budgets = {}
    for kind, text in (
        ("macs", args.max_macs),
        ("params", args.max_params),
        ("latency_ms", args.max_latency_ms),
    ):
        if text is not None:
            flag = "--max-" + kind.replace("_", "-")
            try:
                budgets[kind] = parse_budget(text)
            except ValueError as exc:
                raise CommandError(f"{flag}: {exc}") from None
    selection = solve(table, budgets)
    result = selection.to_dict()
    if args.export:
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
            text = args.formats or ",".join(DEFAULT_FORMATS)
            formats = check_formats([f.strip() for f in text.split(",") if f.strip()])
        except ValueError as exc:
            raise CommandError(f"--formats: {exc}") from None
        overrides: dict[str, Any] = {}
        if args.dataset_dir:
            overrides["dataset_dir"] = args.dataset_dir
        overrides.update(_set_options(args.set))
        from ponas.progress import TqdmCallback
        from ponas.search import CallbackGroup
        from ponas.tracking import deploy_trackers

        params = {"table": args.table, "choices": " ".join(selection.choices), **budgets}
        args.finetune_epochs = args.finetune_epochs or 0
        params["finetune_epochs"] = args.finetune_epochs
        bars = CallbackGroup(TqdmCallback(), *deploy_trackers(params, tensorboard=args.tensorboard))
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
        written = export_all(
            model,
            args.export,
            formats,
            metrics=metrics,
            cost=selection.cost,
            predicted_score=selection.score,
            budgets=budgets,
        )
        result["metrics"] = {k: metrics[k] for k in ("top1", "top5", "finetune_epochs")}
        result["files"] = {k: str(v) for k, v in written.items()}
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"architecture: {' '.join(selection.choices)}")
    error = "" if selection.score_stderr is None else f" ± {selection.score_stderr:.4f}"
    print(
        f"predicted score {selection.score:.4f}{error} (sum of table accuracies, a ranking "
        f"score, not a test accuracy), loss {selection.loss:.4f}"
    )
    print("cost: " + ", ".join(format_cost(k, v) for k, v in selection.cost.items()))
    if "metrics" in result:
        m = result["metrics"]
        print(
            f"measured on the test split: top-1 {100 * m['top1']:.2f}%, top-5 {100 * m['top5']:.2f}%"
        )
        for fmt, path in result["files"].items():
            print(f"wrote {fmt}: {path}")
    return 0


# ---- the parser ----------------------------------------------------------------------------


def _search_arguments(p: argparse.ArgumentParser, required: bool = True) -> None:
    """--preset | --cfg and the setting flags, shared by `search` and `plan`."""
    from ponas.catalog import DATASETS

    src = p.add_mutually_exclusive_group(required=required)
    src.add_argument("--preset", help="imagenet, cifar10, digits, shapes, or a space YAML")
    src.add_argument("--cfg", help="search.yml: 'preset' or 'space', and any training setting")
    p.add_argument("--epochs", type=int, help="stage-1 epochs")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"])
    p.add_argument("--dataset", choices=DATASETS)
    p.add_argument(
        "--dataset-dir", dest="dataset_dir", help="folder of a cifar10 or imagefolder dataset"
    )
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="any setting, e.g. --set finetune_steps=20",
    )


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ponas-studio")
    except PackageNotFoundError:
        return "unknown (not installed; pip install -e .)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ponas",
        description="Progressive One-shot NAS: search once, deploy a network for any budget.",
    )
    parser.add_argument("--version", action="version", version=f"ponas {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("describe", help="MACs, params and layers of a network")
    p.add_argument(
        "--model", required=True, help="PONASA|PONASB|PONASC, an ARCH.json or a bundle .pt"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_describe)

    p = sub.add_parser("search", help="run both stages and write the accuracy table")
    _search_arguments(p, required=False)
    p.add_argument(
        "--stage2-only",
        dest="stage2_only",
        action="store_true",
        help="stage 2 again on --supernet (e.g. --set stage2_seed=1): measures entry noise",
    )
    p.add_argument("--supernet", help="with --stage2-only: a search's folder or its stage1.pt")
    p.add_argument("--out", help="output folder (default runs/PRESET)")
    p.add_argument(
        "--resume", action="store_true", help="continue from the last checkpoint in --out"
    )
    p.add_argument("--overwrite", action="store_true", help="replace a search already in --out")
    p.add_argument("--lut", help="lut.json from `ponas profile`: add its latency to the table")
    p.add_argument(
        "--tensorboard", metavar="DIR", help="write TensorBoard event files (loss, table) into DIR"
    )
    p.set_defaults(func=cmd_search)

    p = sub.add_parser(
        "plan", help="steps, images, memory and GPU-hours of a search, before it runs"
    )
    _search_arguments(p)
    p.add_argument(
        "--images-per-s",
        dest="images_per_s",
        type=float,
        help="stage-1 training images/s on the target card (bench/stage1_throughput.py)",
    )
    p.add_argument(
        "--train-images",
        dest="train_images",
        type=int,
        help="training images before the validation split (default: counted, or ImageNet-1k)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_plan, out=None)

    p = sub.add_parser("deploy", help="choose (and build) the best network for a budget")
    p.add_argument("--table", required=True, help="table.json written by `ponas search`")
    p.add_argument("--max-macs", help="MACs budget, e.g. 300M")
    p.add_argument("--max-params", help="parameter budget, e.g. 5M")
    p.add_argument(
        "--max-latency-ms", help="latency budget in ms (needs latency: --lut, or a table with it)"
    )
    p.add_argument(
        "--lut", help="lut.json from `ponas profile`: the device's latency for this table's space"
    )
    p.add_argument(
        "--pareto",
        metavar="COST",
        help="print the whole frontier against COST (macs, params, latency_ms)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--supernet",
        help="with --export: supernet.pt to inherit weights from (default: beside --table)",
    )
    p.add_argument(
        "--export", metavar="DIR", help="build, evaluate and export the network into DIR"
    )
    p.add_argument(
        "--finetune-epochs", type=int, help="with --export: fine-tune after inheriting (default 0)"
    )
    p.add_argument(
        "--formats",
        help=f"comma-separated, of {', '.join(FORMATS)} (default {','.join(DEFAULT_FORMATS)}; "
        "pt2: a torch.export program; torchscript: legacy, only when asked for)",
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
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="search setting for the build, e.g. --set finetune_lr=0.01",
    )
    p.set_defaults(func=cmd_deploy)

    p = sub.add_parser("evaluate", help="top-1/top-5, MACs, params and latency of trained weights")
    p.add_argument(
        "--cfg",
        required=True,
        help="config.yml (cuda, ngpu, num_workers, batch_size, datasets, dataset_dir, input_size, mean, std, log_dir)",
    )
    p.add_argument(
        "--model", required=True, help="PONASA|PONASB|PONASC, an ARCH.json or a bundle .pt"
    )
    p.add_argument(
        "--pretrain",
        help="weights (.pth state dict, ours or the reference's layout); optional for a bundle",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object (no other lines)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("convert", help="weights between our layout and the reference's")
    p.add_argument(
        "--to",
        required=True,
        choices=["reference", "ponas"],
        help="reference: a state dict for the reference's test.py; ponas: a bundle",
    )
    p.add_argument(
        "--model",
        help="PONASA|PONASB|PONASC or an ARCH.json for a plain state dict "
        "(default: the released network the weights fit)",
    )
    p.add_argument("src", metavar="IN", help="a bundle .pt or a state dict (either layout)")
    p.add_argument("dst", metavar="OUT", help="where to write")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("profile", help="measure a latency lookup table of every block")
    p.add_argument("--space", default="imagenet", help="preset name or space YAML")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--input-size", type=int, help="override the space's input resolution")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument(
        "--check",
        type=int,
        default=20,
        help="random whole networks, timed whole as a user would, to check the prediction",
    )
    p.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="wall: elapsed time; cpu: CPU time of the timing thread, for a CPU other programs "
        "share (with --threads 1; not for cuda)",
    )
    p.add_argument(
        "--threads",
        type=int,
        help="CPU threads to time with (default: torch's; 1 on a busy machine)",
    )
    p.add_argument("--out", required=True, help="where to write lut.json")
    p.set_defaults(func=cmd_profile)

    from ponas.audit import add_audit_parser
    from ponas.remote_commands import add_remote_parser  # it builds on this module's names

    add_audit_parser(sub)
    add_remote_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except BrokenPipeError:  # e.g. `ponas deploy --pareto macs | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("ponas: interrupted", file=sys.stderr)
        return 130
    except (CommandError, ValueError, OSError) as exc:
        print(f"ponas: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    # `python -m ponas.cli`: run the imported module, whose CommandError `remote` raises
    from ponas.cli import main as imported_main

    sys.exit(imported_main())
