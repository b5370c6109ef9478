"""The ``ponas`` command: describe, search, deploy, evaluate, convert, profile, and ``remote``
(the same jobs against a server: ponas/remote_commands.py).

Every command prints a one-line ``ponas: error: ...`` and exits with status 2 on bad input
(unknown model, malformed file, impossible budget), never a traceback.
"""

from __future__ import annotations

import argparse
import json
import re
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


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` shows each flag's default, where it has one (not for flags off by default)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is False or not action.help:
            return action.help or ""
        return super()._get_help_string(action) or ""


class Parser(argparse.ArgumentParser):
    """``ponas``'s parser: defaults in ``--help``; a bad flag or value is one line, exit 2."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Help)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# ---- describe ------------------------------------------------------------------------------


def _torch_file(path: str, flag: str) -> None:
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


def _describe_model(spec: str) -> Any:
    """``describe --model``: a network, or an error that says what describe takes."""
    from ponas.network import resolve_model

    if Path(spec).suffix not in (".pt", ".pth"):
        return resolve_model(spec)[0]
    _torch_file(spec, "--model ")
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
            note=_note,
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
    from ponas.export import convert_weights
    from ponas.network import WeightsError

    _torch_file(args.src, "IN ")
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


#: the setting flags of `search` and `plan`, and the setting each one sets
SETTING_FLAGS = {
    "epochs": "--epochs",
    "seed": "--seed",
    "device": "--device",
    "dataset": "--dataset",
    "dataset_dir": "--dataset-dir",
}
#: settings that change how fast a search runs, not what it computes: --resume may change them
RESUME_FREE = ("device", "num_workers", "feature_cache_mb")


def _search_settings(args: argparse.Namespace) -> tuple[Any, dict[str, Any], Any]:
    """``(space, overrides, out)`` from --preset or --cfg and the setting flags.

    Precedence: the preset's ``search:`` section, then the --cfg file, then the flags. A
    setting given both as a flag and as ``--set`` is refused (which one was meant?).
    """
    overrides: dict[str, Any] = {}
    space: Any = args.preset
    out = getattr(args, "out", None)
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
    settings = _set_options(args.set)
    for key, flag in SETTING_FLAGS.items():
        if getattr(args, key) is not None:
            if key in settings:
                raise CommandError(
                    f"{flag} {getattr(args, key)} and --set {key}={settings[key]} both set "
                    f"{key}; give one of them"
                )
            overrides[key] = getattr(args, key)
    overrides.update(settings)
    return space, overrides, out


def _resolved(space: Any, overrides: dict[str, Any], data: bool = True) -> tuple[Any, Any]:
    """The space and :class:`SearchConfig` that would run, or a one-line error that names the
    flag fixing it (``data``: the data set's folder must be named too)."""
    from ponas.catalog import BUILTIN_DATASETS
    from ponas.search.config import resolve

    space, cfg = resolve(space, overrides)
    if data and cfg.dataset not in BUILTIN_DATASETS and not cfg.dataset_dir:
        what = "the CIFAR-10 batches" if cfg.dataset == "cifar10" else "train/ and val/"
        raise CommandError(
            f"the {cfg.dataset} data set needs its folder: give --dataset-dir DIR (holding {what})"
        )
    return space, cfg


def _print_config(given: Any, space: Any, cfg: Any) -> None:
    """``--print-config``: the space (as given: a preset's name or a space YAML's path, else
    its full spec) and every setting that would run, as a search.yml that --cfg takes."""
    import yaml

    print(f"# the settings `ponas search` would run with (space {space.name!r}); a --cfg file")
    source = {"preset": given} if isinstance(given, str) else {"space": given.to_dict()}
    doc = {**source, **cfg.to_dict()}
    print(yaml.safe_dump(doc, sort_keys=False).rstrip())


def _changed_settings(space: Any, cfg: Any, ckpt: dict[str, Any]) -> list[str]:
    """What differs between a checkpoint's settings and these: ``lr 0.1 there, 0.05 now``."""
    then, now = ckpt.get("config", {}), cfg.to_dict()
    changed = [
        f"{k} {then.get(k)!r} there, {now[k]!r} now"
        for k in now
        if k not in RESUME_FREE and then.get(k) != now[k]
    ]
    old_space, new_space = ckpt.get("space", {}), space.to_dict()
    changed += [
        f"space {k} {old_space.get(k)!r} there, {new_space[k]!r} now"
        for k in new_space
        if k not in ("input_size", "search", "description") and old_space.get(k) != new_space[k]
    ]
    return changed


def _check_resume(space: Any, cfg: Any, out: Path, allow_changed: bool) -> bool:
    """Before ``--resume``: True when the search in ``out`` is already complete (with these
    settings); a refusal when the checkpoint was made with other settings (listing which),
    unless ``allow_changed``."""
    from ponas.search.checkpoint import latest_checkpoint

    ckpt = latest_checkpoint(out, "stage2.pt") or latest_checkpoint(out, "stage1.pt")
    if ckpt is None:
        if (out / "table.json").exists():
            raise CommandError(
                f"--resume: {out} holds a table.json but no checkpoints to continue from; "
                "--overwrite searches again there, --out DIR elsewhere"
            )
        _note(f"--resume: no checkpoint in {out / 'checkpoints'}: starting a new search")
        return False
    changed = _changed_settings(space, cfg, ckpt)
    complete = (
        ckpt.get("stage") == "stage2"
        and len(ckpt.get("path", [])) == space.num_layers
        and (out / "table.json").is_file()
    )
    if complete and changed:
        raise CommandError(
            f"--resume: {out} holds a finished search made with other settings "
            f"({'; '.join(changed)}): nothing to resume; use --out DIR for a new search with "
            "these settings, or --overwrite to replace it"
        )
    if changed and not allow_changed:
        raise CommandError(
            f"--resume: {out}'s checkpoint was made with other settings ({'; '.join(changed)}); "
            "resume without the changes, use --out DIR for a new search, or add "
            "--allow-changed-settings to continue with the new values"
        )
    if changed:
        _note(f"--resume with changed settings ({'; '.join(changed)}): the new values apply")
    return complete


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
    import time

    from ponas.progress import TqdmCallback
    from ponas.search import CallbackGroup, Cancelled, run_search
    from ponas.tracking import search_trackers

    if args.stage2_only or args.supernet:
        return _stage2_only(args)
    space, overrides, out = _search_settings(args)
    resolved_space, cfg = _resolved(space, overrides)
    if args.print_config:
        _print_config(space, resolved_space, cfg)
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
    if args.resume and _check_resume(resolved_space, cfg, out, args.allow_changed_settings):
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
    overrides = _set_options(args.set)
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
    from ponas.plan import estimate

    space, overrides, _ = _search_settings(args)
    _resolved(space, overrides, data=False)  # a bad setting: the same error as search's
    ignored = [flag for flag, given in _run_flags(args) if given]
    if ignored:
        _note(
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


# ---- deploy --------------------------------------------------------------------------------

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


def constrained_frontier(table: Any, kind: str, budgets: dict[str, float]) -> list[Any]:
    """The Pareto frontier against ``kind`` of the networks within ``budgets`` (every kind),
    cheapest first: from the best network within them down, each next point the best network
    strictly cheaper in ``kind`` (one exact solve per point)."""
    import math

    from ponas.solve import Infeasible, pareto_frontier, solve

    others = {k: v for k, v in budgets.items() if k != kind}
    if not others:  # the frontier itself, cut at the budget on its own kind
        cap = budgets.get(kind, math.inf)
        return [p for p in pareto_frontier(table, kind) if p.cost[kind] <= cap]
    points: list[Any] = []
    limit = budgets.get(kind, math.inf)
    while True:
        try:
            point = solve(table, {**others, kind: limit})
        except Infeasible:
            break
        if points and point.score >= points[-1].score:
            points.pop()  # as good and cheaper: the earlier one is dominated
        points.append(point)
        cost = point.cost[kind]
        limit = cost - 1 if float(cost).is_integer() else math.nextafter(cost, -math.inf)
        if limit <= 0:
            break
    return points[::-1]


def top_networks(table: Any, budgets: dict[str, float], k: int) -> list[Any]:
    """The ``k`` best networks within ``budgets``, best first, exactly (Lawler's partition:
    each next one is the best of the subproblems that fix a prefix of an earlier answer and
    forbid its next choice)."""
    import heapq

    from ponas.solve import Infeasible, solve
    from ponas.table import AccuracyTable, TableError

    base = table.to_dict()

    def best(fixed: list[str], banned: frozenset[tuple[int, str]]) -> Any | None:
        d = json.loads(json.dumps(base))
        for layer, row in enumerate(d["accuracy"]):
            for j, cand in enumerate(d["candidates"]):
                off = (layer, cand) in banned or layer < len(fixed) and cand != fixed[layer]
                if off and row[j] is not None:
                    row[j] = None
                    for matrix in d["cost"].values():
                        matrix[layer][j] = None
                    if d.get("stderr"):
                        d["stderr"][layer][j] = None
            allowed = [c for c, a in zip(d["candidates"], row, strict=True) if a is not None]
            if not allowed:
                return None
            if d["path"][layer] not in allowed:
                d["path"][layer] = allowed[0]
        try:
            return solve(AccuracyTable.from_dict(d), budgets)
        except (Infeasible, TableError):
            return None

    first = best([], frozenset())
    if first is None:
        _solve(table, budgets)  # raises the infeasible budget's message
    heap = [(-first.score, 0, first, [], frozenset())]
    found, counter = [], 1
    while heap and len(found) < k:
        _, _, sel, fixed, banned = heapq.heappop(heap)
        found.append(sel)
        for layer in range(len(fixed), len(sel.choices)):
            prefix = list(sel.choices[:layer])
            ban = frozenset({b for b in banned if b[0] >= layer} | {(layer, sel.choices[layer])})
            nxt = best(prefix, ban)
            if nxt is not None:
                heapq.heappush(heap, (-nxt.score, counter, nxt, prefix, ban))
                counter += 1
    return found


def _network_line(point: Any, kinds: list[str]) -> str:
    costs = ", ".join(format_cost(k, point.cost[k]) for k in kinds)
    return f"score {point.score:.4f}  {costs}  {' '.join(point.choices)}"


def _space_of(table: Any) -> Any:
    """What an ARCH.json's ``space`` holds for this table: its full spec, else its name."""
    return table.space if table.has_full_space else table.space["name"]


def cmd_deploy(args: argparse.Namespace) -> int:
    from ponas.table import AccuracyTable

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
    table = AccuracyTable.load(args.table)
    if args.lut:
        from ponas.cost import load_lut, with_latency

        try:
            table = with_latency(table, load_lut(args.lut))
        except ValueError as exc:
            raise CommandError(f"--lut {args.lut}: {exc}") from None
    if args.pareto and args.pareto not in table.cost_kinds:
        if args.pareto != "latency_ms":
            raise CommandError(
                f"--pareto {args.pareto}: this table has costs {', '.join(table.cost_kinds)}"
            )
    budgets = _budgets(args, table)
    if args.pareto:
        _solve(table, budgets)  # an infeasible budget: its message, not an empty list
        frontier = constrained_frontier(table, args.pareto, budgets)
        if args.json:
            print(json.dumps([p.to_dict() for p in frontier]))
            return 0
        within = f" within {_budget_text(budgets)}" if budgets else ""
        print(f"{len(frontier)} Pareto-optimal networks (score against {args.pareto}){within}:")
        for point in frontier:
            print(
                f"{format_cost(args.pareto, point.cost[args.pareto]):>14}  score {point.score:.4f}  "
                f"{' '.join(point.choices)}"
            )
        return 0
    if args.top is not None:
        found = top_networks(table, budgets, args.top)
        if args.json:
            print(json.dumps([{**p.to_dict(), "space": _space_of(table)} for p in found]))
            return 0
        within = f" within {_budget_text(budgets)}" if budgets else ""
        print(f"the {len(found)} best networks{within}:")
        for rank, point in enumerate(found, 1):
            print(f"{rank:>3}. {_network_line(point, table.cost_kinds)}")
        return 0
    selection = _solve(table, budgets)
    result = {**selection.to_dict(), "space": _space_of(table)}
    say = _note_line(args.quiet or args.json)
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
        result["metrics"] = {k: metrics[k] for k in ("top1", "top5", "finetune_epochs")}
        result["files"] = {k: str(v) for k, v in written.items()}
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


def _budget_text(budgets: dict[str, float]) -> str:
    from ponas.units import format_budget

    return ", ".join(f"{BUDGET_FLAGS[k]} {format_budget(v)}" for k, v in budgets.items())


def _note_line(quiet: bool):
    """Progress lines on stderr (none when quiet)."""

    def say(text: str) -> None:
        if not quiet:
            print(text, file=sys.stderr, flush=True)

    return say


# ---- table ---------------------------------------------------------------------------------


def cmd_table(args: argparse.Namespace) -> int:
    """Print a table.json: a grid of entries (the chosen one starred), CSV, or its close calls."""
    from ponas.table import AccuracyTable

    table = AccuracyTable.load(args.table)
    if args.csv:
        sys.stdout.write(table.to_csv())
        return 0
    if args.close_calls:
        if table.stderr is None:
            print(f"{args.table}: no standard errors recorded, so no layer can be called close")
            return 0
        calls = table.close_calls()
        if not calls:
            print("none: in every layer the best entry is ahead of the second by more than")
            print("their combined standard error")
        for c in calls:
            print(
                f"layer {c.layer}: {c.best} {100 * c.best_accuracy:.2f}% ± "
                f"{100 * c.best_stderr:.2f} vs {c.second} {100 * c.second_accuracy:.2f}% ± "
                f"{100 * c.second_stderr:.2f} (apart by {100 * c.gap:.2f} pts, combined error "
                f"{100 * c.noise:.2f} pts)"
            )
        return 0
    width = max(8, *(len(c) + 1 for c in table.candidates))
    meta = table.meta or {}
    print(
        f"{args.table}: {table.space['name']} space, {table.num_layers} layers, "
        f"{meta.get('dataset', '?')} data; validation {meta.get('config', {}).get('score', 'accuracy')} "
        "in %, * = the chosen path"
    )
    print("layer " + "".join(f"{c:>{width}}" for c in table.candidates))
    for i, row in enumerate(table.accuracy):
        cells = []
        for cand, acc in zip(table.candidates, row, strict=True):
            mark = "*" if table.path[i] == cand else " "
            cells.append(" " * width if acc is None else f"{100 * acc:>{width - 1}.1f}{mark}")
        print(f"{i:>5} " + "".join(cells))
    return 0


# ---- the parser ----------------------------------------------------------------------------


def _search_arguments(p: argparse.ArgumentParser, required: bool = True) -> None:
    """--preset | --cfg, the setting flags and the run flags, shared by `search` and `plan`."""
    from ponas.catalog import DATASETS

    src = p.add_mutually_exclusive_group(required=required)
    src.add_argument("--preset", help="imagenet, cifar10, digits, shapes, or a space YAML")
    src.add_argument("--cfg", help="search.yml: 'preset' or 'space', and any training setting")
    p.add_argument("--epochs", type=int, help="stage-1 epochs (the preset's by default)")
    p.add_argument("--seed", type=int, help="the search seed (the preset's by default)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="auto: cuda when present")
    p.add_argument("--dataset", choices=DATASETS, help="the preset's by default")
    p.add_argument(
        "--dataset-dir", dest="dataset_dir", help="folder of a cifar10 or imagefolder dataset"
    )
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="any setting (docs/settings.md), e.g. --set finetune_steps=20; a setting with its "
        "own flag (--epochs ...) is given one way, not both",
    )
    p.add_argument("--out", help="output folder (default runs/PRESET)")
    p.add_argument(
        "--resume", action="store_true", help="continue from the last checkpoint in --out"
    )
    p.add_argument(
        "--allow-changed-settings",
        dest="allow_changed_settings",
        action="store_true",
        help="with --resume: continue although settings differ from the checkpoint's (the new "
        "values apply from there on)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace a search already in --out")
    p.add_argument("--lut", help="lut.json from `ponas profile`: add its latency to the table")
    p.add_argument(
        "--tensorboard", metavar="DIR", help="write TensorBoard event files (loss, table) into DIR"
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars or per-epoch lines")


def _run_flags(args: argparse.Namespace) -> list[tuple[str, bool]]:
    """The flags of `search` that say where and how it runs, not what it computes."""
    return [
        ("--out", args.out is not None),
        ("--resume", args.resume),
        ("--allow-changed-settings", args.allow_changed_settings),
        ("--overwrite", args.overwrite),
        ("--lut", args.lut is not None),
        ("--tensorboard", args.tensorboard is not None),
        ("--quiet", args.quiet),
    ]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ponas-studio")
    except PackageNotFoundError:
        return "unknown (not installed; pip install -e .)"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
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
    p.add_argument(
        "--print-config",
        dest="print_config",
        action="store_true",
        help="print the space and every setting that would run (a search.yml), and stop",
    )
    p.set_defaults(func=cmd_search)

    p = sub.add_parser(
        "plan",
        help="steps, images, memory and GPU-hours of a search, before it runs",
        description="The flags of `ponas search` but --stage2-only, --supernet and "
        "--print-config (plan prints the plan); those that "
        "say where and how it runs (--out, --resume, --lut, ...) change no figure and are "
        "named in a note.",
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
    p.set_defaults(func=cmd_plan)

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
        "--top",
        type=int,
        metavar="K",
        help="list the K best networks within the budgets (best first), not only the best",
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no progress lines or bars on stderr")
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
        help="config.yml (cuda, ngpu, num_workers, batch_size, datasets, dataset_dir, "
        "input_size, mean, std, log_dir; examples/evaluate.yml); optional for a bundle .pt, "
        "which knows its data set",
    )
    p.add_argument(
        "--model", required=True, help="PONASA|PONASB|PONASC, an ARCH.json or a bundle .pt"
    )
    p.add_argument(
        "--pretrain",
        help="weights (.pth state dict, ours or the reference's layout); optional for a bundle",
    )
    p.add_argument(
        "--threads", type=int, help="CPU threads to run and time with (default: torch's)"
    )
    p.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="how latency is timed: wall, elapsed time; cpu, the CPU time of the timing thread, "
        "steadier on a CPU other programs share (with --threads 1; not for cuda)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object (no other lines)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("table", help="print an accuracy table: a grid, CSV, or its close calls")
    p.add_argument("table", metavar="TABLE", help="table.json written by `ponas search`")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--csv", action="store_true", help="CSV for a spreadsheet (one row a layer)")
    how.add_argument(
        "--close-calls",
        dest="close_calls",
        action="store_true",
        help="the layers whose two best entries are within noise (combined standard error)",
    )
    p.set_defaults(func=cmd_table)

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
        print(f"ponas: error: {_in_flags(exc)}", file=sys.stderr)
        return EXIT_USAGE


def _in_flags(exc: Exception) -> str:
    """A settings error as the command line spells the fix: ``set KEY=V`` is ``--set KEY=V``,
    ``more epochs`` is ``--epochs``."""
    from ponas.search.config import ConfigError

    text = str(exc)
    if isinstance(exc, ConfigError):
        text = re.sub(r"\bset (\w+)=", r"--set \1=", text)
        text = text.replace("or more epochs", "or a larger --epochs")
    return text


if __name__ == "__main__":
    # `python -m ponas.cli`: run the imported module, whose CommandError `remote` raises
    from ponas.cli import main as imported_main

    sys.exit(imported_main())
