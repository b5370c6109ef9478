"""``ponas remote redraw``: stage 2 again on a server run's supernet with another stage-2 seed
(``POST /api/runs/{id}/redraw/``), and with ``--wait`` its entry noise against that run
(``GET /api/runs/{id}/noise/``), printed as ``ponas search --stage2-only`` prints it."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from ponas import noise
from ponas.cli.common import EXIT_FAILED, set_options
from ponas.cli.flags import add_json_flag, add_set_flag
from ponas.cli.remote_wait import ended, stopped_waiting, wait_for_run
from ponas.remote import Client

REDRAW_LABELS = {"stage2_seed": "--stage2-seed", "non_field_errors": "--set"}


def cmd_redraw(args: argparse.Namespace) -> int:
    body = set_options(args.set)
    if args.stage2_seed is not None:
        body["stage2_seed"] = args.stage2_seed
    client = Client.from_config()
    run = client.json("POST", f"/api/runs/{args.run}/redraw/", body)
    seed = run["config"]["stage2_seed"]
    if not args.json:
        print(
            f"started run {run['id']} (stage 2 again on run {args.run}, stage2_seed {seed}) "
            f"in queue {run['queue']}"
        )
    if not args.wait:
        if args.json:
            print(json.dumps(run))
        return 0
    try:
        run = wait_for_run(client, run["id"])
    except KeyboardInterrupt:
        return stopped_waiting(f"run {run['id']}", f" (`ponas remote wait {run['id']}`)")
    if run["status"] != "succeeded":
        print(json.dumps(run) if args.json else ended(f"run {run['id']}", run))
        return EXIT_FAILED
    doc = client.json("GET", f"/api/runs/{run['id']}/noise/")
    if args.json:
        print(json.dumps(doc))
        return 0
    a, b = doc["stage2_seeds"]
    print(
        f"run {run['id']} succeeded: entry noise against run {args.run} (stage2_seed {a} vs {b}):"
    )
    for line in noise.summary_lines(doc):
        print(f"  {line}")
    print(
        f"{noise.within(doc)} of {len(doc['layers'])} layers within the budget "
        f"(ratio <= {doc['budget']})"
    )
    return 0


def add_redraw_parser(
    rsub: Any, command: Callable[..., argparse.ArgumentParser]
) -> argparse.ArgumentParser:
    """``ponas remote redraw`` under ``ponas remote``'s subparsers (``command``: how that
    module makes one of its commands)."""
    p = command(
        rsub,
        "redraw",
        "stage 2 again on a run's supernet with another seed: its entry noise",
        cmd_redraw,
        REDRAW_LABELS,
    )
    p.add_argument("run", metavar="RUN", type=int, help="a succeeded run's id")
    p.add_argument(
        "--stage2-seed",
        type=int,
        help="the new draw's seed (default: the smallest one the run and its redraws have not "
        "drawn from)",
    )
    add_set_flag(
        p,
        "another stage-2 setting, e.g. --set eval_batches=8 (eval_batches, suffix_samples, "
        "finetune_steps, finetune_lr, bn_batches, score, context; repeatable)",
    )
    p.add_argument(
        "--wait",
        action="store_true",
        help="show its progress until it ends, then its entry noise per layer; exit 1 if it "
        "failed or was cancelled",
    )
    add_json_flag(p, "print the new run (with --wait: the ponas-noise/1 document) as JSON")
    return p
