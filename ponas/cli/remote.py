"""``ponas remote``: sign in to a running PONAS Studio server, list and start searches, wait
for them with a progress bar, fetch tables and build and download networks, through its REST
API (the client is :mod:`ponas.remote`). Errors read as the local commands' do: one line,
``ponas: error: ...``, exit status 2; a run or build that ends failed or cancelled exits 1.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from ponas.cli.common import EXIT_FAILED, CommandError, format_list, set_options
from ponas.cli.flags import add_budget_flags, add_build_flags, add_json_flag, add_set_flag
from ponas.cli.remote_redraw import add_redraw_parser
from ponas.cli.remote_wait import (
    ended,
    stopped_waiting,
    wait_for_audit,
    wait_for_deployment,
    wait_for_run,
)
from ponas.files import FILENAMES, atomic_write_text
from ponas.remote import (
    Client,
    NotSignedIn,
    RemoteError,
    Session,
    base_url,
    config_path,
    forget,
)
from ponas.units import format_cost

USERNAME_ENV, PASSWORD_ENV = "PONAS_USERNAME", "PONAS_PASSWORD"


def _client() -> Client:
    return Client.from_config()


def _when(text: str | None) -> str:
    """An API time in the local time zone, to the minute."""
    if not text:
        return "-"
    return datetime.fromisoformat(text).astimezone().strftime("%Y-%m-%d %H:%M")


# ---- login, logout --------------------------------------------------------------------------


def _credentials(args: argparse.Namespace) -> tuple[str, str]:
    """Username and password: flags and environment for scripts, else asked for."""
    interactive = sys.stdin.isatty()
    username = args.username or os.environ.get(USERNAME_ENV)
    if args.password_stdin:
        if not username:
            raise CommandError(f"--password-stdin needs --username or {USERNAME_ENV}")
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = os.environ.get(PASSWORD_ENV)
    if not username:
        if not interactive:
            raise CommandError(f"no username: give --username or set {USERNAME_ENV}")
        username = input("username: ").strip()
    if password is None:
        if not interactive:
            raise CommandError(f"no password: give --password-stdin or set {PASSWORD_ENV}")
        password = getpass.getpass("password: ")
    return username, password


def cmd_login(args: argparse.Namespace) -> int:
    client = Client(base_url(args.url))
    username, password = _credentials(args)
    session = client.sign_in(username, password)
    path = session.save()
    expires = f", expires {_when(session.expiry)}" if session.expiry else ""
    print(f"signed in to {session.url} as {username} (token saved in {path}{expires})")
    return 0


def cmd_logout(args: argparse.Namespace) -> int:
    """Revoke the stored token on its server (``POST /api/auth/logout/``), then forget it;
    a server that cannot be reached leaves it valid there, and the message says where to
    revoke it."""
    try:
        session = Session.load()
    except RemoteError:  # none (NotSignedIn), or unreadable: forget() removes it all the same
        session = None
    outcome = ""
    if session is not None:
        try:
            Client(session.url, session.token).json("POST", "/api/auth/logout/")
            outcome = "the server revoked it"
        except NotSignedIn:
            outcome = "the server no longer accepted it (expired or revoked already)"
        except RemoteError as exc:
            until = f" until {_when(session.expiry)}" if session.expiry else ""
            outcome = (
                f"could not revoke it ({exc}): it stays valid on the server{until}; revoke it "
                f"on {session.url}/account/tokens/"
            )
    session = forget() or session
    if session is None:
        print(f"not signed in (no {config_path()}); nothing to do")
        return 0
    print(f"signed out of {session.url}: the token is removed from {config_path()}")
    if outcome:
        print(outcome)
    return 0


# ---- runs -----------------------------------------------------------------------------------


def _source(run: Mapping[str, Any]) -> str:
    """``preset`` or ``preset/dataset`` when the run names a dataset of its own."""
    dataset = (run.get("config") or {}).get("dataset")
    return f"{run['preset']}/{dataset}" if dataset and dataset != run["preset"] else run["preset"]


def cmd_runs(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise CommandError(f"--limit must be at least 1, got {args.limit}")
    runs, count = _client().runs(limit=args.limit, status=args.status)
    if args.json:
        print(json.dumps(runs))
        return 0
    if not runs:
        print("no runs" + (f" with status {args.status}" if args.status else ""))
        return 0
    rows = [
        (
            str(r["id"]),
            _source(r),
            r["status"],
            f"{100 * r['progress']:.0f}%",
            _when(r["created"]),
            r.get("name") or "",
        )
        for r in runs
    ]
    header = ("id", "preset/dataset", "state", "progress", "created", "name")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    align = [">", "<", "<", ">", "<", "<"]
    for row in [header, *rows]:
        cells = [f"{cell:{a}{w}}" for cell, a, w in zip(row, align, widths, strict=True)]
        print("  ".join(cells).rstrip())
    if count > len(runs):
        print(f"(the newest {len(runs)} of {count} runs; --limit N shows more)")
    return 0


def _watch_run(client: Client, run_id: int) -> int:
    """Wait for the run; its final state as one line, and the exit status it means."""
    try:
        run = wait_for_run(client, run_id)
    except KeyboardInterrupt:
        return stopped_waiting(
            f"run {run_id}",
            f" (`ponas remote wait {run_id}` to watch it, `ponas remote cancel {run_id}` "
            "to stop it)",
        )
    if run["status"] == "succeeded":
        print(f"run {run['id']} succeeded: path {' '.join(run.get('path') or [])}")
        return 0
    print(ended(f"run {run['id']}", run))
    return EXIT_FAILED


def cmd_search(args: argparse.Namespace) -> int:
    config = set_options(args.set)
    if args.dataset:
        config["dataset"] = args.dataset
    client = _client()
    run = client.start_run(args.preset, config, name=args.name, queue=args.queue)
    print(f"started run {run['id']} ({run['name']}) in queue {run['queue']}")
    if not args.wait:
        return 0
    return _watch_run(client, run["id"])


def cmd_wait(args: argparse.Namespace) -> int:
    return _watch_run(_client(), args.run)


def cmd_cancel(args: argparse.Namespace) -> int:
    run = _client().cancel_run(args.run)
    said = "cancelled" if run["status"] == "cancelled" else "stops at its next step"
    print(f"run {run['id']} {said}")
    return 0


def cmd_table(args: argparse.Namespace) -> int:
    text = _client().table(args.run, csv=args.csv, profile=args.profile)
    if not args.csv:  # the server's JSON, laid out for a file a person may read
        text = json.dumps(json.loads(text), indent=1) + "\n"
    if args.out:
        atomic_write_text(args.out, text)
        print(f"wrote run {args.run}'s table to {args.out}")
    else:
        sys.stdout.write(text)
    return 0


# ---- deploy ---------------------------------------------------------------------------------


def download_destination(folder: Path, fmt: str) -> Path:
    """Where format ``fmt`` of a deployment is written: only a known format's file name, and
    only inside ``folder`` (the format comes from the server's answer, which must not choose
    where a file lands: ``"/../../x"`` would escape)."""
    if fmt not in FILENAMES:
        known = ", ".join(sorted(FILENAMES))
        raise RemoteError(f"the server offered an unknown format {fmt[:40]!r}; known: {known}")
    dest = folder / FILENAMES[fmt]
    if not dest.resolve().is_relative_to(folder.resolve()):
        raise RemoteError(f"{dest} is not inside --download {folder}")
    return dest


def cmd_deploy(args: argparse.Namespace) -> int:
    client = _client()
    deployment = client.start_deployment(
        args.run,
        max_macs=args.max_macs,
        max_params=args.max_params,
        max_latency_ms=args.max_latency_ms,
        profile=args.profile,
        finetune_epochs=args.finetune_epochs,
        formats=format_list(args.formats) if args.formats else None,
    )
    deployment_id = deployment["id"]
    print(
        f"started deployment {deployment_id} of run {args.run}: {' '.join(deployment['choices'])}"
    )
    try:
        deployment = wait_for_deployment(client, deployment_id)
    except KeyboardInterrupt:
        return stopped_waiting(f"deployment {deployment_id}")
    if deployment["status"] != "succeeded":
        print(ended(f"deployment {deployment_id}", deployment))
        return EXIT_FAILED
    files = {}
    if args.download:
        folder = Path(args.download)
        for fmt in deployment.get("downloads") or {}:
            dest = download_destination(folder, fmt)
            client.download_export(deployment_id, fmt, dest)
            files[fmt] = str(dest)
        record = folder / "deployment.json"
        atomic_write_text(record, json.dumps(deployment, indent=1) + "\n")
        files["record"] = str(record)
    if args.json:
        print(json.dumps({**deployment, "files": files}))
        return 0
    print(f"deployment {deployment_id} succeeded")
    cost = deployment.get("cost") or {}
    print("cost: " + ", ".join(format_cost(k, v) for k, v in cost.items()))
    if deployment.get("measured_accuracy") is not None:
        print(f"measured on the test split: top-1 {100 * deployment['measured_accuracy']:.2f}%")
    for what, path in files.items():
        print(f"wrote {what}: {path}")
    return 0


# ---- audit ----------------------------------------------------------------------------------


def cmd_audit(args: argparse.Namespace) -> int:
    from ponas.audit import print_report

    client = _client()
    fields = {
        "budgets": args.budgets,
        "networks": args.networks,
        "epochs": args.epochs,
        "seeds": args.seeds,
    }
    if args.estimate:
        estimate = client.audit_estimate(args.run, **fields)
        print(json.dumps(estimate) if args.json else estimate["text"])
        return 0
    audit = client.start_audit(args.run, **fields)
    audit_id = audit["id"]
    if not args.json:
        print(f"started audit {audit_id} of run {args.run}: {audit['estimate']['text']}")
    if not args.wait:
        if args.json:
            print(json.dumps(audit))
        return 0
    try:
        audit = wait_for_audit(client, args.run, audit_id)
    except KeyboardInterrupt:
        return stopped_waiting(f"audit {audit_id}")
    if args.json:
        print(json.dumps(audit))
    elif audit["status"] == "succeeded":
        print_report(audit["results"], out=sys.stdout)
    if audit["status"] != "succeeded":
        if not args.json:
            print(ended(f"audit {audit_id}", audit))
        return EXIT_FAILED
    return 0


# ---- the parser -----------------------------------------------------------------------------


def _guarded(
    command: Callable[[argparse.Namespace], int], labels: Mapping[str, str] | None = None
) -> Callable[[argparse.Namespace], int]:
    """``command`` with a failed request as the CLI's one-line error; the API's field names
    in it read as the flags the user typed (``labels``)."""

    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except RemoteError as exc:
            raise CommandError(exc.text(labels)) from None

    return run


RUNS_LABELS = {"status": "--status", "page_size": "--limit"}
TABLE_LABELS = {"profile": "--profile", "format": "--csv"}
SEARCH_LABELS = {"preset": "--preset", "config": "--set", "queue": "--queue", "name": "--name"}
DEPLOY_LABELS = {
    "run": "",  # its messages name the run already
    "max_macs": "--max-macs",
    "max_params": "--max-params",
    "max_latency_ms": "--max-latency-ms",
    "profile": "--profile",
    "finetune_epochs": "--finetune-epochs",
    "formats": "--formats",
}

AUDIT_LABELS = {
    "budgets": "--budgets",
    "networks": "--networks",
    "epochs": "--epochs",
    "seeds": "--seeds",
}


def _command(
    rsub: Any,
    name: str,
    help: str,
    command: Callable[[argparse.Namespace], int],
    labels: Mapping[str, str] | None = None,
) -> argparse.ArgumentParser:
    """``ponas remote NAME``, which runs ``command`` (:func:`_guarded` with ``labels``)."""
    p = rsub.add_parser(name, help=help)
    p.set_defaults(func=_guarded(command, labels))
    return p


def _run_argument(p: argparse.ArgumentParser, help: str = "the run's id") -> None:
    p.add_argument("run", metavar="RUN", type=int, help=help)


def add_remote_parser(sub: Any) -> None:
    """``ponas remote ...`` under the ``ponas`` command's subparsers."""
    remote = sub.add_parser(
        "remote",
        help="the same jobs against a running PONAS Studio server (REST API, token)",
        description="Talk to a running PONAS Studio server through its REST API. "
        f"`login` keeps its URL and a token in {config_path()} "
        "(PONAS_REMOTE_CONFIG overrides the path).",
    )
    rsub = remote.add_subparsers(dest="remote_command", required=True, metavar="COMMAND")

    p = _command(rsub, "login", "sign in; keep the URL and an API token", cmd_login)
    p.add_argument("url", metavar="URL", help="the server, e.g. http://127.0.0.1:8000")
    p.add_argument("--username", help=f"default: ${USERNAME_ENV}, else asked")
    p.add_argument(
        "--password-stdin",
        action="store_true",
        help=f"read the password from the first line of stdin (default: ${PASSWORD_ENV}, "
        "else asked)",
    )

    _command(rsub, "logout", "revoke the token on the server and forget it", cmd_logout)

    p = _command(
        rsub,
        "runs",
        "your runs: id, preset/dataset, state, progress, created",
        cmd_runs,
        RUNS_LABELS,
    )
    p.add_argument("--status", help="only runs in this state (queued, running, succeeded, ...)")
    p.add_argument("--limit", type=int, default=50, help="the newest N runs (default 50)")
    add_json_flag(p, "print the runs as JSON")

    p = _command(rsub, "search", "start a search on the server", cmd_search, SEARCH_LABELS)
    p.add_argument("--preset", required=True, help="imagenet, cifar10, digits, shapes")
    add_set_flag(p, "any search setting, e.g. --set epochs=30 (repeatable)")
    p.add_argument("--dataset", help="a bundled or registered dataset, by name")
    p.add_argument("--queue", help="the queue of its heavy work (default: the server's)")
    p.add_argument("--name", help="a name for the run (default: 'PRESET search')")
    p.add_argument(
        "--wait",
        action="store_true",
        help="show its progress until it ends; exit 1 if it failed or was cancelled",
    )

    p = _command(rsub, "wait", "watch a run until it ends (exit 1: failed or cancelled)", cmd_wait)
    _run_argument(p)

    p = _command(rsub, "cancel", "stop a queued or running search", cmd_cancel)
    _run_argument(p)

    p = _command(
        rsub,
        "table",
        "a run's accuracy table (ponas-table/1 JSON, or CSV)",
        cmd_table,
        TABLE_LABELS,
    )
    _run_argument(p)
    p.add_argument("--csv", action="store_true", help="CSV for a spreadsheet")
    p.add_argument("--profile", type=int, help="a device profile id: add its latency")
    p.add_argument("-o", "--out", metavar="FILE", help="write to FILE (default: stdout)")

    p = _command(
        rsub,
        "deploy",
        "build the best network of a run for a budget; download it",
        cmd_deploy,
        DEPLOY_LABELS,
    )
    _run_argument(p, "a succeeded run's id")
    add_budget_flags(p, "latency budget in ms (with --profile)")
    p.add_argument("--profile", type=int, help="the device profile whose latency to budget in")
    add_build_flags(
        p,
        "fine-tune after inheriting (default: the server's, 0)",
        "torchscript: legacy, only when asked for",
    )
    p.add_argument(
        "--download",
        metavar="DIR",
        help="write the built files into DIR (model.pt, ...) and its record (deployment.json)",
    )
    add_json_flag(p, "print the deployment as JSON")

    p = _command(
        rsub,
        "audit",
        "check a run's table on its own data: networks trained from scratch by the workers",
        cmd_audit,
        AUDIT_LABELS,
    )
    _run_argument(p, "a succeeded run's id")
    p.add_argument("--budgets", required=True, nargs="+", help="MACs budgets, e.g. 1.2M 2M")
    p.add_argument("--networks", type=int, help="cost-matched networks per budget (default 10)")
    p.add_argument("--epochs", type=int, help="from-scratch training epochs (default 3)")
    p.add_argument("--seeds", type=int, help="train every network this many times (default 1)")
    p.add_argument(
        "--estimate", action="store_true", help="print what it would cost; start nothing"
    )
    p.add_argument(
        "--wait",
        action="store_true",
        help="show its trainings until it ends, then the report; exit 1 if it failed",
    )
    add_json_flag(p, "print the audit (or estimate) as JSON")

    add_redraw_parser(rsub, _command)
