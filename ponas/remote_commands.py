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
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from ponas.cli import CommandError, _set_options
from ponas.files import DEFAULT_FORMATS, FILENAMES, FORMATS, atomic_write_text
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

EXIT_FAILED = 1  # the run or build ended failed or cancelled
EXIT_INTERRUPTED = 130
ACTIVE = ("queued", "running")  # the API's status values of work not finished yet
POLL_SECONDS = 1.0
USERNAME_ENV, PASSWORD_ENV = "PONAS_USERNAME", "PONAS_PASSWORD"


def _client() -> Client:
    return Client.from_config()


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _when(text: str | None) -> str:
    """An API time in the local time zone, to the minute."""
    if not text:
        return "-"
    return _time(text).astimezone().strftime("%Y-%m-%d %H:%M")


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


def _download_destination(folder: Path, fmt: str) -> Path:
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


def _bar_text(run: Mapping[str, Any]) -> tuple[str, str]:
    """What the bar says of a run: the stage (and layer), and where it waits, if it does."""
    desc = f"run {run['id']} {run['status']}"
    if run["status"] == "running":
        desc = f"run {run['id']} {run['stage']}"
        if run.get("stage") == "stage2" and run.get("current_layer") is not None:
            desc += f" layer {run['current_layer']}"
    waiting = run.get("waiting") or {}
    return desc, waiting.get("message", "")


def _epoch_line(point: Mapping[str, Any]) -> str:
    values = point.get("values") or {}
    shown = ", ".join(f"{k} {v:.4g}" for k, v in values.items() if isinstance(v, int | float))
    return f"epoch {point['step']}: {shown}"


class _Lines:
    """Off a terminal (a log, CI) a wait prints whole lines when what it shows changes,
    where a tqdm bar would write ``\r`` frames."""

    def __init__(self) -> None:
        from ponas.progress import is_terminal

        self.off = not is_terminal(sys.stderr)
        self.last = ""

    def show(self, text: str) -> None:
        if self.off and text != self.last:
            print(text, file=sys.stderr, flush=True)
            self.last = text


def wait_for_run(client: Client, run_id: int) -> dict[str, Any]:
    """Poll the run until it is no longer queued or running, with a progress bar (stderr)
    driven by its progress and a line per epoch of stage 1; the run's final detail."""
    from tqdm import tqdm

    lines = _Lines()
    bar = tqdm(
        total=100,
        desc=f"run {run_id}",
        file=sys.stderr,
        dynamic_ncols=True,
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}{postfix}",
        disable=lines.off,
    )
    since = None
    try:
        while True:
            run = client.run(run_id, since=since)
            for point in run.get("metrics") or []:
                if point["kind"] == "epoch":
                    bar.write(_epoch_line(point), file=sys.stderr)
                    if since is None or _time(point["time"]) > _time(since):
                        since = point["time"]
            desc, waiting = _bar_text(run)
            bar.set_description_str(desc, refresh=False)
            bar.set_postfix_str(waiting, refresh=False)
            bar.n = round(100 * run["progress"], 1)
            bar.refresh()
            tenth = 10 * int(bar.n // 10)  # a line per stage, wait and tenth of the way
            lines.show(f"{desc}: {tenth}%" + (f" ({waiting})" if waiting else ""))
            if run["status"] not in ACTIVE:
                return run
            time.sleep(POLL_SECONDS)
    finally:
        bar.close()


def _report_run(run: Mapping[str, Any]) -> int:
    """The final state as one line; the exit status it means."""
    if run["status"] == "succeeded":
        print(f"run {run['id']} succeeded: path {' '.join(run.get('path') or [])}")
        return 0
    reason = f": {run['error']}" if run.get("error") else ""
    print(f"run {run['id']} {run['status']}{reason}")
    return EXIT_FAILED


def _watch_run(client: Client, run_id: int) -> int:
    try:
        run = wait_for_run(client, run_id)
    except KeyboardInterrupt:
        print(
            f"ponas: stopped waiting; run {run_id} goes on on the server "
            f"(`ponas remote wait {run_id}` to watch it, `ponas remote cancel {run_id}` "
            "to stop it)",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    return _report_run(run)


def cmd_search(args: argparse.Namespace) -> int:
    config = _set_options(args.set)
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


def wait_for_deployment(client: Client, deployment_id: int) -> dict[str, Any]:
    """Poll the deployment until its build is no longer queued or running (a ticking line on
    stderr); its final record."""
    from tqdm import tqdm

    lines = _Lines()
    bar = tqdm(
        file=sys.stderr,
        bar_format="{desc} {elapsed}",
        desc=f"deployment {deployment_id}",
        disable=lines.off,
    )
    try:
        while True:
            deployment = client.deployment(deployment_id)
            bar.set_description_str(f"deployment {deployment_id} {deployment['status']}")
            lines.show(f"deployment {deployment_id} {deployment['status']}")
            if deployment["status"] not in ACTIVE:
                return deployment
            time.sleep(POLL_SECONDS)
    finally:
        bar.close()


def cmd_deploy(args: argparse.Namespace) -> int:
    formats = None
    if args.formats:
        formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    client = _client()
    deployment = client.start_deployment(
        args.run,
        max_macs=args.max_macs,
        max_params=args.max_params,
        max_latency_ms=args.max_latency_ms,
        profile=args.profile,
        finetune_epochs=args.finetune_epochs,
        formats=formats,
    )
    deployment_id = deployment["id"]
    print(
        f"started deployment {deployment_id} of run {args.run}: {' '.join(deployment['choices'])}"
    )
    try:
        deployment = wait_for_deployment(client, deployment_id)
    except KeyboardInterrupt:
        print(
            f"ponas: stopped waiting; deployment {deployment_id} goes on on the server",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    if deployment["status"] != "succeeded":
        reason = f": {deployment['error']}" if deployment.get("error") else ""
        print(f"deployment {deployment_id} {deployment['status']}{reason}")
        return EXIT_FAILED
    files = {}
    if args.download:
        folder = Path(args.download)
        for fmt in deployment.get("downloads") or {}:
            dest = _download_destination(folder, fmt)
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


def wait_for_audit(client: Client, run_id: int, audit_id: int) -> dict[str, Any]:
    """Poll the audit until it is no longer queued or running (a bar of its trainings on
    stderr); its final record."""
    from tqdm import tqdm

    lines = _Lines()
    bar = tqdm(file=sys.stderr, desc=f"audit {audit_id}", unit="training", disable=lines.off)
    try:
        while True:
            audit = client.audit(run_id, audit_id)
            bar.total = audit.get("total") or None
            bar.n = audit.get("trained") or 0
            bar.set_description_str(f"audit {audit_id} {audit['status']}")
            lines.show(f"audit {audit_id} {audit['status']}: {bar.n} of {bar.total or '?'} trained")
            if audit["status"] not in ACTIVE:
                return audit
            time.sleep(POLL_SECONDS)
    finally:
        bar.close()


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
        print(f"ponas: stopped waiting; audit {audit_id} goes on on the server", file=sys.stderr)
        return EXIT_INTERRUPTED
    if args.json:
        print(json.dumps(audit))
    elif audit["status"] == "succeeded":
        print_report(audit["results"], out=sys.stdout)
    if audit["status"] != "succeeded":
        if not args.json:
            reason = f": {audit['error']}" if audit.get("error") else ""
            print(f"audit {audit_id} {audit['status']}{reason}")
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

    p = rsub.add_parser("login", help="sign in; keep the URL and an API token")
    p.add_argument("url", metavar="URL", help="the server, e.g. http://127.0.0.1:8000")
    p.add_argument("--username", help=f"default: ${USERNAME_ENV}, else asked")
    p.add_argument(
        "--password-stdin",
        action="store_true",
        help=f"read the password from the first line of stdin (default: ${PASSWORD_ENV}, "
        "else asked)",
    )
    p.set_defaults(func=_guarded(cmd_login))

    p = rsub.add_parser("logout", help="revoke the token on the server and forget it")
    p.set_defaults(func=_guarded(cmd_logout))

    p = rsub.add_parser("runs", help="your runs: id, preset/dataset, state, progress, created")
    p.add_argument("--status", help="only runs in this state (queued, running, succeeded, ...)")
    p.add_argument("--limit", type=int, default=50, help="the newest N runs (default 50)")
    p.add_argument("--json", action="store_true", help="print the runs as JSON")
    p.set_defaults(func=_guarded(cmd_runs, {"status": "--status", "page_size": "--limit"}))

    p = rsub.add_parser("search", help="start a search on the server")
    p.add_argument("--preset", required=True, help="imagenet, cifar10, digits, shapes")
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="any search setting, e.g. --set epochs=30 (repeatable)",
    )
    p.add_argument("--dataset", help="a bundled or registered dataset, by name")
    p.add_argument("--queue", help="the queue of its heavy work (default: the server's)")
    p.add_argument("--name", help="a name for the run (default: 'PRESET search')")
    p.add_argument(
        "--wait",
        action="store_true",
        help="show its progress until it ends; exit 1 if it failed or was cancelled",
    )
    p.set_defaults(func=_guarded(cmd_search, SEARCH_LABELS))

    p = rsub.add_parser("wait", help="watch a run until it ends (exit 1: failed or cancelled)")
    p.add_argument("run", metavar="RUN", type=int, help="the run's id")
    p.set_defaults(func=_guarded(cmd_wait))

    p = rsub.add_parser("cancel", help="stop a queued or running search")
    p.add_argument("run", metavar="RUN", type=int, help="the run's id")
    p.set_defaults(func=_guarded(cmd_cancel))

    p = rsub.add_parser("table", help="a run's accuracy table (ponas-table/1 JSON, or CSV)")
    p.add_argument("run", metavar="RUN", type=int, help="the run's id")
    p.add_argument("--csv", action="store_true", help="CSV for a spreadsheet")
    p.add_argument("--profile", type=int, help="a device profile id: add its latency")
    p.add_argument("-o", "--out", metavar="FILE", help="write to FILE (default: stdout)")
    p.set_defaults(func=_guarded(cmd_table, {"profile": "--profile", "format": "--csv"}))

    p = rsub.add_parser("deploy", help="build the best network of a run for a budget; download it")
    p.add_argument("run", metavar="RUN", type=int, help="a succeeded run's id")
    p.add_argument("--max-macs", help="MACs budget, e.g. 300M")
    p.add_argument("--max-params", help="parameter budget, e.g. 5M")
    p.add_argument("--max-latency-ms", help="latency budget in ms (with --profile)")
    p.add_argument("--profile", type=int, help="the device profile whose latency to budget in")
    p.add_argument(
        "--finetune-epochs", type=int, help="fine-tune after inheriting (default: the server's, 0)"
    )
    p.add_argument(
        "--formats",
        help=f"comma-separated, of {', '.join(FORMATS)} (default {','.join(DEFAULT_FORMATS)}; "
        "torchscript: legacy, only when asked for)",
    )
    p.add_argument(
        "--download",
        metavar="DIR",
        help="write the built files into DIR (model.pt, ...) and its record (deployment.json)",
    )
    p.add_argument("--json", action="store_true", help="print the deployment as JSON")
    p.set_defaults(func=_guarded(cmd_deploy, DEPLOY_LABELS))

    p = rsub.add_parser(
        "audit",
        help="check a run's table on its own data: networks trained from scratch by the workers",
    )
    p.add_argument("run", metavar="RUN", type=int, help="a succeeded run's id")
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
    p.add_argument("--json", action="store_true", help="print the audit (or estimate) as JSON")
    p.set_defaults(func=_guarded(cmd_audit, AUDIT_LABELS))
