"""The ``ponas`` command: describe, search, deploy, evaluate, profile.

Every command prints a one-line ``ponas: error: ...`` and exits with status 2 on bad input
(unknown model, malformed file, impossible budget), never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

EXIT_USAGE = 2


class CommandError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def _fmt_count(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f}{unit}"
    return f"{n:g}"


def resolve_model(spec: str, num_classes: int | None = None, input_size: int | None = None):
    """``PONASA|PONASB|PONASC`` (imagenet space), an architecture ``.json``, or a bundle ``.pt``.

    Returns ``(model, bundle_or_None)``. ``num_classes`` / ``input_size`` re-shape the space of
    a released model or architecture for another dataset; a bundle keeps its own.
    """
    from ponas.export import load_bundle
    from ponas.network import RELEASED, Network, load_architecture, released_name
    from ponas.space import load_space

    if Path(spec).suffix in (".pt", ".pth"):
        return load_bundle(spec)
    key = released_name(spec)
    if key is not None:
        space, choices = load_space("imagenet"), RELEASED[key]
    elif spec.endswith(".json"):
        net = load_architecture(spec)
        space, choices = net.space, net.choices
    else:
        raise CommandError(
            f"unknown model {spec!r}: expected PONASA, PONASB, PONASC, an architecture .json "
            "or a checkpoint bundle .pt"
        )
    overrides = {"num_classes": num_classes, "input_size": input_size}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if overrides:
        space = space.replace(**overrides)
    return Network(space, choices), None


# ---- describe ------------------------------------------------------------------------------


def cmd_describe(args: argparse.Namespace) -> int:
    from ponas.cost import base_cost, candidate_cost

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
            f"{r['size']:>5} {_fmt_count(r['macs']):>9} {_fmt_count(r['params']):>9}"
        )
    print(
        f"fixed parts (stem, first block, head): {_fmt_count(base.macs)} MACs, {_fmt_count(base.params)} params"
    )
    print(f"total: {_fmt_count(total_macs)} MACs, {_fmt_count(total_params)} params")
    return 0


# ---- profile -------------------------------------------------------------------------------


def cmd_profile(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from ponas.cost import latency_error, profile_latency
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
    bar = tqdm(desc="profiling blocks", unit="block", file=sys.stderr)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    lut = profile_latency(space, args.device, args.batch, args.warmup, args.repeats, progress)
    bar.close()
    checks = latency_error(
        lut, space, args.device, samples=args.check, warmup=args.warmup, repeats=args.repeats
    )
    lut["check"] = checks
    atomic_write_text(args.out, json.dumps(lut, indent=1))
    print(f"latency table for {space.name} on {lut['device']} (batch {args.batch}) -> {args.out}")
    print(f"fixed parts: {lut['base_ms']:.3f} ms")
    for row in checks:
        print(
            f"random arch: predicted {row['predicted_ms']:.2f} ms, measured {row['measured_ms']:.2f} ms, "
            f"error {row['error_pct']:+.1f}%"
        )
    if checks:
        mean_abs = sum(abs(r["error_pct"]) for r in checks) / len(checks)
        print(f"mean absolute error of the summed prediction: {mean_abs:.1f}%")
    return 0


# ---- evaluate ------------------------------------------------------------------------------

EVAL_KEYS = {
    "cuda",
    "ngpu",
    "num_workers",
    "batch_size",
    "datasets",
    "dataset_dir",
    "input_size",
    "mean",
    "std",
    "log_dir",
    "val_size",
    "seed",
}


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


def load_weights(model, path: str) -> None:
    """Load a plain state dict (or a dict holding one) with a CPU map_location; a mismatch is an
    error listing the keys, not a traceback."""
    import torch

    p = Path(path)
    if not p.is_file():
        raise CommandError(f"--pretrain {p}: no such file")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CommandError(f"--pretrain {p}: not a readable PyTorch checkpoint ({exc})") from None
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict):
        raise CommandError(f"--pretrain {p}: expected a state dict, got {type(obj).__name__}")
    state = {k.removeprefix("module."): v for k, v in obj.items()}
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong_shape = sorted(
        k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape)
    )
    if missing or unexpected or wrong_shape:

        def show(keys: list[str]) -> str:
            return ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")

        parts = []
        if missing:
            parts.append(f"missing {len(missing)}: {show(missing)}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)}: {show(unexpected)}")
        if wrong_shape:
            parts.append(f"wrong shape {len(wrong_shape)}: {show(wrong_shape)}")
        raise CommandError(f"--pretrain {p} does not fit the model: " + "; ".join(parts))
    model.load_state_dict(state)


def cmd_evaluate(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from ponas.cost import _median_ms, network_cost
    from ponas.data import load_dataset, make_loader
    from ponas.files import atomic_write_text
    from ponas.train import evaluate, pick_device

    cfg = load_yaml_config(args.cfg, EVAL_KEYS)
    model, bundle = resolve_model(args.model)
    space = model.space
    dataset = str(cfg.get("datasets", space.dataset)).lower()
    dataset = {"imagenet": "imagefolder"}.get(dataset, dataset)
    input_size = int(
        cfg.get("input_size", bundle["preprocessing"]["input_size"] if bundle else space.input_size)
    )
    mean = cfg.get("mean", list(space.mean))
    std = cfg.get("std", list(space.std))
    splits = load_dataset(
        dataset,
        cfg.get("dataset_dir"),
        input_size=input_size,
        mean=mean,
        std=std,
        val_size=cfg.get("val_size", 0.1),
        seed=int(cfg.get("seed", 0)),
    )
    if bundle is None:
        model, _ = resolve_model(args.model, num_classes=splits.num_classes, input_size=input_size)
        if not args.pretrain:
            raise CommandError(
                f"--pretrain is required with --model {args.model} (weights to evaluate)"
            )
        load_weights(model, args.pretrain)
    elif args.pretrain:
        load_weights(model, args.pretrain)
    if model.space.num_classes != splits.num_classes:
        raise CommandError(
            f"the model predicts {model.space.num_classes} classes, the {dataset} data has {splits.num_classes}"
        )
    device = pick_device(bool(cfg.get("cuda", False)))
    model = model.to(device).eval()
    forward = model
    ngpu = int(cfg.get("ngpu", 1))
    if device.type == "cuda" and ngpu > 1 and torch.cuda.device_count() > 1:
        forward = torch.nn.DataParallel(
            model, device_ids=list(range(min(ngpu, torch.cuda.device_count())))
        )
    loader = make_loader(
        splits.test,
        int(cfg.get("batch_size", 64)),
        shuffle=False,
        num_workers=int(cfg.get("num_workers", 0)),
    )
    bar = tqdm(total=len(splits.test), desc="evaluating", unit="img", file=sys.stderr)
    metrics = evaluate(forward, loader, device, topk=(1, 5), progress=bar.update)
    bar.close()
    cost = network_cost(model.space, model.choices)
    x = torch.randn(1, model.space.in_channels, input_size, input_size, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with torch.inference_mode():
        latency = _median_ms(lambda: model(x), sync, warmup=10, repeats=30)
    result = {
        "model": args.model,
        "top1": metrics["top1"],
        "top5": metrics["top5"],
        "examples": metrics["examples"],
        "macs": cost.macs,
        "params": cost.params,
        "latency_ms": latency,
        "device": str(device),
    }
    print(
        f"top-1 {100 * metrics['top1']:.2f}%  top-5 {100 * metrics['top5']:.2f}%  ({metrics['examples']} images)"
    )
    print(
        f"MACs {_fmt_count(cost.macs)}  params {_fmt_count(cost.params)}  latency {latency:.2f} ms (batch 1, {device}, median)"
    )
    if cfg.get("log_dir"):
        out = Path(cfg["log_dir"]) / "evaluate.json"
        atomic_write_text(out, json.dumps(result, indent=1))
    if args.json:
        print(json.dumps(result))
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


def cmd_search(args: argparse.Namespace) -> int:
    from ponas.progress import TqdmCallback
    from ponas.search import Cancelled, run_search

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
    name = space if isinstance(space, str) else space.name
    out = Path(out or f"runs/{Path(name).stem}")
    bars = TqdmCallback()
    try:
        table = run_search(space, overrides, out, bars, resume=args.resume)
    except Cancelled:
        print(
            f"search stopped; resume with: ponas search ... --out {out} --resume", file=sys.stderr
        )
        return 130
    finally:
        bars.close()
    print(f"path: {' '.join(table.path)}")
    print(
        f"wrote {out / 'table.json'} and {out / 'supernet.pt'} (checkpoints in {out / 'checkpoints'})"
    )
    return 0


# ---- deploy --------------------------------------------------------------------------------


def cmd_deploy(args: argparse.Namespace) -> int:
    from ponas.deploy import format_cost, pareto_frontier, parse_budget, solve
    from ponas.table import AccuracyTable

    table = AccuracyTable.load(args.table)
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
            raise CommandError("--export needs --supernet supernet.pt (the weights to inherit)")
        from ponas.deploy import specialize
        from ponas.export import export_all

        overrides: dict[str, Any] = {}
        if args.dataset_dir:
            overrides["dataset_dir"] = args.dataset_dir
        overrides.update(_set_options(args.set))
        from ponas.progress import TqdmCallback

        bars = TqdmCallback()
        try:
            model, metrics = specialize(
                args.supernet,
                selection.choices,
                overrides=overrides,
                finetune_epochs=args.finetune_epochs,
                callback=bars,
            )
        finally:
            bars.close()
        formats = [f.strip() for f in args.formats.split(",") if f.strip()]
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
    print(
        f"predicted score {selection.score:.4f} (sum of table accuracies), loss {selection.loss:.4f}"
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ponas",
        description="Progressive One-shot NAS: search once, deploy a network for any budget.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("describe", help="MACs, params and layers of a network")
    p.add_argument(
        "--model", required=True, help="PONASA|PONASB|PONASC, an ARCH.json or a bundle .pt"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_describe)

    p = sub.add_parser("search", help="run both stages and write the accuracy table")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--preset", help="imagenet, cifar10, digits, or a space YAML")
    src.add_argument("--cfg", help="search.yml: 'preset' or 'space', and any training setting")
    p.add_argument("--out", help="output folder (default runs/PRESET)")
    p.add_argument(
        "--resume", action="store_true", help="continue from the last checkpoint in --out"
    )
    p.add_argument("--epochs", type=int, help="stage-1 epochs")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"])
    p.add_argument("--dataset", choices=["digits", "cifar10", "imagefolder"])
    p.add_argument(
        "--dataset-dir", dest="dataset_dir", help="folder of a cifar10 or imagefolder dataset"
    )
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="any setting, e.g. --set finetune_steps=20",
    )
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("deploy", help="choose (and build) the best network for a budget")
    p.add_argument("--table", required=True, help="table.json written by `ponas search`")
    p.add_argument("--max-macs", help="MACs budget, e.g. 300M")
    p.add_argument("--max-params", help="parameter budget, e.g. 5M")
    p.add_argument("--max-latency-ms", help="latency budget in ms (needs a table with latency)")
    p.add_argument(
        "--pareto",
        metavar="COST",
        help="print the whole frontier against COST (macs, params, latency_ms)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--supernet", help="supernet.pt to inherit weights from (with --export)")
    p.add_argument(
        "--export", metavar="DIR", help="build, evaluate and export the network into DIR"
    )
    p.add_argument(
        "--finetune-epochs", type=int, default=0, help="fine-tune after inheriting (default 0)"
    )
    p.add_argument(
        "--formats", default="pt,torchscript,onnx", help="comma-separated: pt, torchscript, onnx"
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
    p.add_argument("--pretrain", help="weights (.pth state dict); optional for a bundle")
    p.add_argument("--json", action="store_true", help="also print the results as JSON")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("profile", help="measure a latency lookup table of every block")
    p.add_argument("--space", default="imagenet", help="preset name or space YAML")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--input-size", type=int, help="override the space's input resolution")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument(
        "--check", type=int, default=3, help="random whole networks to check the sum against"
    )
    p.add_argument("--out", required=True, help="where to write lut.json")
    p.set_defaults(func=cmd_profile)
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
    sys.exit(main())
