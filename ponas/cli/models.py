"""``ponas describe``, ``evaluate``, ``convert`` and ``profile``: one network's costs and
layers, its accuracy and latency with trained weights, its weights between layouts, and a
device's latency lookup table of every block."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ponas.cli.common import CommandError, load_yaml_config, note
from ponas.cli.flags import add_json_flag
from ponas.units import format_cost, format_count

MODEL_HELP = "PONASA|PONASB|PONASC, an ARCH.json or a bundle .pt"


def torch_file(path: str, flag: str) -> None:
    """Refuse a file that is not a ``torch.save`` file at all (before torch is asked, whose
    message for a text file speaks of pickled Python objects)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except FileNotFoundError:
        raise CommandError(f"{flag}{path}: no such file") from None
    except IsADirectoryError:
        raise CommandError(f"{flag}{path}: is a folder, expected a .pt or .pth file") from None
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):
        raise CommandError(
            f"{flag}{path}: not a PyTorch weights file (a bundle .pt or a state dict .pth, "
            "as torch.save writes them)"
        )


# ---- describe ------------------------------------------------------------------------------


def _describe_model(spec: str) -> Any:
    """``describe --model``: a network, or an error that says what describe takes."""
    from ponas.network import resolve_model

    if Path(spec).suffix not in (".pt", ".pth"):
        return resolve_model(spec)[0]
    torch_file(spec, "--model ")
    from ponas.search.checkpoint import SUPERNET_FORMAT
    from ponas.tensor_files import load_file

    obj = load_file(spec)
    if isinstance(obj, dict) and obj.get("format") == SUPERNET_FORMAT:
        raise CommandError(
            f"--model {spec} is a supernet (every candidate of every layer), not one network: "
            "build one with `ponas deploy --table TABLE --export DIR`, then describe DIR/model.pt"
        )
    try:
        return resolve_model(spec)[0]
    except ValueError as exc:
        if "--pretrain" not in str(exc):
            raise
        raise CommandError(
            f"--model {spec}: not a PONAS bundle; describe takes PONASA|PONASB|PONASC, an "
            "ARCH.json (ponas deploy --json writes one) or a bundle .pt (ponas deploy --export)"
        ) from None


def cmd_describe(args: argparse.Namespace) -> int:
    """MACs, params and layers of a network, as a table or one JSON object."""
    from ponas.cost import base_cost, candidate_cost

    model = _describe_model(args.model)
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
    """Time every block of a space on a device into lut.json, checked on whole networks."""
    import torch

    from ponas.cost import prediction_quality, profile_latency
    from ponas.files import atomic_write_text
    from ponas.progress import counter
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
    bar = counter("timing blocks in context, then whole networks", "pass")

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


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Top-1/top-5 of trained weights on a data set, with MACs, params and latency."""
    from ponas.evaluate import CONFIG_KEYS, LOG_FILE, evaluate_pretrained
    from ponas.network import WeightsError
    from ponas.progress import counter

    if args.cfg:
        cfg = load_yaml_config(args.cfg, CONFIG_KEYS)
    elif Path(args.model).suffix in (".pt", ".pth"):
        cfg = {}  # a bundle knows its space, data set and preprocessing
    else:
        raise CommandError(
            f"--model {args.model} needs --cfg config.yml naming the data set (e.g. "
            "examples/evaluate.yml); only a bundle .pt knows its own"
        )
    if args.threads is not None and args.threads < 1:
        raise CommandError(f"--threads must be at least 1, got {args.threads}")
    log = Path(cfg["log_dir"]) / LOG_FILE if cfg.get("log_dir") else None
    replacing = log is not None and log.exists()
    bars: list[Any] = []  # opened once the images are counted: errors before print alone

    def progress(done: int, total: int) -> None:
        if not bars:
            bars.append(counter("evaluating", "img", total, quiet=args.json))
        bars[0].update(done - bars[0].n)

    try:
        result = evaluate_pretrained(
            cfg,
            args.model,
            args.pretrain,
            progress,
            note=note,
            threads=args.threads,
            clock=args.clock,
        )
    except WeightsError as exc:
        raise CommandError(f"--pretrain {exc}") from None
    finally:
        for bar in bars:
            bar.close()
    wrote = ""
    if result["log_file"]:
        again = " (replacing the earlier one)" if replacing else ""
        wrote = f"wrote {result['log_file']}{again}"
    if args.json:
        if wrote:
            print(wrote, file=sys.stderr)
        print(json.dumps(result))
        return 0
    how = result["latency"]
    threads = ""
    if how["threads"]:
        threads = f", {how['threads']} thread{'s' if how['threads'] > 1 else ''}"
    print(
        f"top-1 {100 * result['top1']:.2f}%  top-5 {100 * result['top5']:.2f}%  "
        f"({result['examples']} images)"
    )
    print(
        f"MACs {format_count(result['macs'])}  params {format_count(result['params'])}  "
        f"latency {result['latency_ms']:.2f} ms (batch 1, {result['device']}, median) of "
        f"{how['repeats']} forwards after {how['warmup']} warm-up, {how['clock']} clock{threads}"
    )
    if wrote:
        print(wrote)
    return 0


# ---- convert -------------------------------------------------------------------------------


def cmd_convert(args: argparse.Namespace) -> int:
    """Weights between our layout (a bundle) and the reference's (a state dict)."""
    from ponas.export import convert_weights
    from ponas.network import WeightsError

    torch_file(args.src, "IN ")
    try:
        net, out = convert_weights(args.src, args.dst, args.to, args.model)
    except WeightsError as exc:
        raise CommandError(str(exc)) from None
    what = "a bundle" if args.to == "ponas" else "a state dict in the reference's layout"
    print(f"wrote {what}: {out} ({net.space.name} space, {' '.join(net.choices)})")
    return 0


# ---- the parsers ---------------------------------------------------------------------------


def _clock_flag(p: argparse.ArgumentParser, help: str) -> None:
    """``--clock wall|cpu``: how latency is timed."""
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall", help=help)


def add_describe_parser(sub: Any) -> None:
    p = sub.add_parser("describe", help="MACs, params and layers of a network")
    p.add_argument("--model", required=True, help=MODEL_HELP)
    add_json_flag(p)
    p.set_defaults(func=cmd_describe)


def add_evaluate_parser(sub: Any) -> None:
    p = sub.add_parser("evaluate", help="top-1/top-5, MACs, params and latency of trained weights")
    p.add_argument(
        "--cfg",
        help="config.yml (cuda, ngpu, num_workers, batch_size, datasets, dataset_dir, "
        "input_size, mean, std, log_dir; examples/evaluate.yml); optional for a bundle .pt, "
        "which knows its data set",
    )
    p.add_argument("--model", required=True, help=MODEL_HELP)
    p.add_argument(
        "--pretrain",
        help="weights (.pth state dict, ours or the reference's layout); optional for a bundle",
    )
    p.add_argument(
        "--threads", type=int, help="CPU threads to run and time with (default: torch's)"
    )
    _clock_flag(
        p,
        "how latency is timed: wall, elapsed time; cpu, the CPU time of the timing thread, "
        "steadier on a CPU other programs share (with --threads 1; not for cuda)",
    )
    add_json_flag(p, "print one JSON object (no other lines)")
    p.set_defaults(func=cmd_evaluate)


def add_convert_parser(sub: Any) -> None:
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


def add_profile_parser(sub: Any) -> None:
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
    _clock_flag(
        p,
        "wall: elapsed time; cpu: CPU time of the timing thread, for a CPU other programs "
        "share (with --threads 1; not for cuda)",
    )
    p.add_argument(
        "--threads",
        type=int,
        help="CPU threads to time with (default: torch's; 1 on a busy machine)",
    )
    p.add_argument("--out", required=True, help="where to write lut.json")
    p.set_defaults(func=cmd_profile)
