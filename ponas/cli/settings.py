"""From the flags of ``ponas search`` and ``ponas plan`` to the space and settings a search
runs with: --preset or --cfg, the setting flags and ``--set``, their precedence, and the check
that ``--resume`` continues a checkpoint made with the same settings."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ponas.cli.common import CommandError, load_yaml_config, note, set_options
from ponas.cli.flags import add_set_flag

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


def search_settings(args: argparse.Namespace) -> tuple[Any, dict[str, Any], Any]:
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
    settings = set_options(args.set)
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


def resolved(space: Any, overrides: dict[str, Any], data: bool = True) -> tuple[Any, Any]:
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


def print_config(given: Any, space: Any, cfg: Any) -> None:
    """``--print-config``: the space (as given: a preset's name or a space YAML's path, else
    its full spec) and every setting that would run, as a search.yml that --cfg takes."""
    import yaml

    print(f"# the settings `ponas search` would run with (space {space.name!r}); a --cfg file")
    source = {"preset": given} if isinstance(given, str) else {"space": given.to_dict()}
    doc = {**source, **cfg.to_dict()}
    print(yaml.safe_dump(doc, sort_keys=False).rstrip())


def changed_settings(space: Any, cfg: Any, ckpt: dict[str, Any]) -> list[str]:
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


def check_resume(space: Any, cfg: Any, out: Path, allow_changed: bool) -> bool:
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
        note(f"--resume: no checkpoint in {out / 'checkpoints'}: starting a new search")
        return False
    changed = changed_settings(space, cfg, ckpt)
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
        note(f"--resume with changed settings ({'; '.join(changed)}): the new values apply")
    return complete


def add_search_arguments(p: argparse.ArgumentParser, required: bool = True) -> None:
    """--preset | --cfg, the setting flags and the run flags, shared by `search` and `plan`."""
    from ponas.catalog import DATASETS

    src = p.add_mutually_exclusive_group(required=required)
    src.add_argument("--preset", help="imagenet, cifar10, digits, shapes, or a space YAML")
    src.add_argument("--cfg", help="search.yml: 'preset' or 'space', and any training setting")
    p.add_argument("--epochs", type=int, help="stage-1 epochs (the preset's by default)")
    p.add_argument("--seed", type=int, help="the search seed (the preset's by default)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="auto: cuda when present")
    p.add_argument("--dataset", choices=DATASETS, help="the preset's by default")
    p.add_argument("--dataset-dir", help="folder of a cifar10 or imagefolder dataset")
    add_set_flag(
        p,
        "any setting (docs/settings.md), e.g. --set finetune_steps=20; a setting with its "
        "own flag (--epochs ...) is given one way, not both",
    )
    p.add_argument("--out", help="output folder (default runs/PRESET)")
    p.add_argument(
        "--resume", action="store_true", help="continue from the last checkpoint in --out"
    )
    p.add_argument(
        "--allow-changed-settings",
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


def run_flags(args: argparse.Namespace) -> list[tuple[str, bool]]:
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
