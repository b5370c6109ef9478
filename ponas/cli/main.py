"""The ``ponas`` command's parser, assembled from each command group's subparsers in the
order ``ponas --help`` lists them, and :func:`main`, which runs one command and turns a bad
input into one line, ``ponas: error: ...``, with exit status 2 (never a traceback)."""

from __future__ import annotations

import argparse
import re
import sys

from ponas.cli.common import EXIT_INTERRUPTED, EXIT_USAGE, CommandError
from ponas.cli.deploy import add_deploy_parser
from ponas.cli.flags import Parser
from ponas.cli.models import (
    add_convert_parser,
    add_describe_parser,
    add_evaluate_parser,
    add_profile_parser,
)
from ponas.cli.remote import add_remote_parser
from ponas.cli.search import add_plan_parser, add_search_parser
from ponas.cli.tables import add_table_parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ponas-studio")
    except PackageNotFoundError:
        return "unknown (not installed; pip install -e .)"


def build_parser() -> argparse.ArgumentParser:
    """``ponas`` and every subcommand (each sets ``func``, the function that runs it)."""
    from ponas.audit import add_audit_parser

    parser = Parser(
        prog="ponas",
        description="Progressive One-shot NAS: search once, deploy a network for any budget.",
    )
    parser.add_argument("--version", action="version", version=f"ponas {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (
        add_describe_parser,
        add_search_parser,
        add_plan_parser,
        add_deploy_parser,
        add_evaluate_parser,
        add_table_parser,
        add_convert_parser,
        add_profile_parser,
        add_audit_parser,
        add_remote_parser,
    ):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``ponas ARGV`` (``sys.argv[1:]`` by default); its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except BrokenPipeError:  # e.g. `ponas deploy --pareto macs | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("ponas: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
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
