"""How ``ponas`` commands declare their flags: the parser (each flag's default in ``--help``,
a bad flag or value refused in one line) and the flags several commands share, each declared
once (``--set``, ``--json``, the budgets, a build's ``--finetune-epochs`` and ``--formats``)."""

from __future__ import annotations

import argparse
from typing import Any

from ponas.cli.common import EXIT_USAGE
from ponas.files import DEFAULT_FORMATS, FORMATS


class Help(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` shows each flag's default, where it has one (not for flags off by default)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is False or not action.help:
            return action.help or ""
        return super()._get_help_string(action) or ""


class Parser(argparse.ArgumentParser):
    """``ponas``'s parser: defaults in ``--help``; a bad flag or value is one line, exit 2."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", Help)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_set_flag(p: argparse.ArgumentParser, help: str) -> None:
    """``--set KEY=VALUE`` (repeatable); :func:`ponas.cli.common.set_options` reads it."""
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help=help)


def add_json_flag(p: argparse.ArgumentParser, help: str = "print one JSON object") -> None:
    """``--json``: the command's answer as JSON on stdout."""
    p.add_argument("--json", action="store_true", help=help)


def add_budget_flags(p: argparse.ArgumentParser, latency_help: str) -> None:
    """``--max-macs``, ``--max-params`` and ``--max-latency-ms`` (as text: "300M", "5M")."""
    p.add_argument("--max-macs", help="MACs budget, e.g. 300M")
    p.add_argument("--max-params", help="parameter budget, e.g. 5M")
    p.add_argument("--max-latency-ms", help=latency_help)


def add_build_flags(p: argparse.ArgumentParser, finetune_help: str, kinds: str) -> None:
    """``--finetune-epochs N`` and ``--formats a,b`` of a build (``kinds`` says which export
    format is which, after the default); :func:`ponas.cli.common.format_list` reads
    ``--formats``."""
    p.add_argument("--finetune-epochs", type=int, help=finetune_help)
    p.add_argument(
        "--formats",
        help=f"comma-separated, of {', '.join(FORMATS)} (default {','.join(DEFAULT_FORMATS)}; "
        f"{kinds})",
    )
