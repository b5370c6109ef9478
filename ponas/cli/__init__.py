"""The ``ponas`` command line (``ponas = ponas.cli:main``): describe, search, plan, deploy,
evaluate, table, convert, profile, audit, and ``remote`` (the same jobs against a server).

Every command prints a one-line ``ponas: error: ...`` and exits with status 2 on bad input
(unknown model, malformed file, impossible budget), never a traceback. One module per command
group (``models``, ``search``, ``deploy``, ``tables``, ``remote``), what they share in
``common`` (running) and ``flags`` (declaring), the parser assembled in ``main``; this module
only re-exports.
"""

from ponas.cli.common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    CommandError,
    load_yaml_config,
    set_options,
)
from ponas.cli.deploy import BUDGET_FLAGS, cmd_deploy, constrained_frontier, top_networks
from ponas.cli.flags import Parser
from ponas.cli.main import build_parser, main
from ponas.cli.models import cmd_convert, cmd_describe, cmd_evaluate, cmd_profile
from ponas.cli.search import cmd_plan, cmd_search
from ponas.cli.settings import RESUME_FREE, SETTING_FLAGS
from ponas.cli.tables import cmd_table

__all__ = [
    "BUDGET_FLAGS",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_USAGE",
    "RESUME_FREE",
    "SETTING_FLAGS",
    "CommandError",
    "Parser",
    "build_parser",
    "cmd_convert",
    "cmd_deploy",
    "cmd_describe",
    "cmd_evaluate",
    "cmd_plan",
    "cmd_profile",
    "cmd_search",
    "cmd_table",
    "constrained_frontier",
    "load_yaml_config",
    "main",
    "set_options",
    "top_networks",
]
