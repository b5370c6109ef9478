"""``ponas table``: print an accuracy table (table.json) as a grid with the chosen path
starred, as CSV, or as its close calls (layers whose two best entries are within noise)."""

from __future__ import annotations

import argparse
import sys
from typing import Any


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


def add_table_parser(sub: Any) -> None:
    p = sub.add_parser("table", help="print an accuracy table: a grid, CSV, or its close calls")
    p.add_argument("table", metavar="TABLE", help="table.json written by `ponas search`")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--csv", action="store_true", help="CSV for a spreadsheet (one row a layer)")
    how.add_argument(
        "--close-calls",
        action="store_true",
        help="the layers whose two best entries are within noise (combined standard error)",
    )
    p.set_defaults(func=cmd_table)
