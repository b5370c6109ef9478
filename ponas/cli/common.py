"""What every ``ponas`` command shares when it runs: the user-facing error and the exit
statuses, notes and progress lines on stderr, YAML config files, and reading ``--set
KEY=VALUE`` and ``--formats a,b`` (:mod:`ponas.cli.flags` declares them)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

EXIT_USAGE = 2  # bad input: a one-line ``ponas: error: ...``
EXIT_FAILED = 1  # a run or build (on a server) ended failed or cancelled
EXIT_INTERRUPTED = 130  # Ctrl-C


class CommandError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def note(text: str) -> None:
    """One line to stderr about something done differently from what was asked."""
    print(f"ponas: note: {text}", file=sys.stderr)


def note_line(quiet: bool) -> Callable[[str], None]:
    """Progress lines on stderr (none when quiet)."""

    def say(text: str) -> None:
        if not quiet:
            print(text, file=sys.stderr, flush=True)

    return say


def load_yaml_config(path: str, allowed: set[str] | None = None) -> dict[str, Any]:
    """A YAML mapping of config keys, or a one-line error (no file, not YAML, not a mapping,
    keys outside ``allowed``)."""
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


def parse_value(text: str) -> Any:
    """A ``--set`` value read as YAML (30, 0.1, true), else kept as text."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def set_options(items: list[str] | None) -> dict[str, Any]:
    """``--set KEY=VALUE`` options as settings (values read as YAML: 30, 0.1, true, text)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise CommandError(f"--set {item!r}: expected KEY=VALUE, e.g. --set epochs=30")
        out[key.strip()] = parse_value(value)
    return out


def format_list(text: str) -> list[str]:
    """``--formats pt, onnx`` as ``["pt", "onnx"]`` (blanks dropped)."""
    return [f.strip() for f in text.split(",") if f.strip()]
