"""Waiting on a server's work for ``ponas remote``: poll a run, a deployment's build or an
audit until it is no longer queued or running, with a progress bar on stderr on a terminal
and whole lines when what it shows changes elsewhere (a log, CI)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from ponas.cli.common import EXIT_INTERRUPTED
from ponas.remote import Client

ACTIVE = ("queued", "running")  # the API's status values of work not finished yet
POLL_SECONDS = 1.0


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


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


def _poll(
    bar: Any, fetch: Callable[[], dict[str, Any]], show: Callable[[dict[str, Any]], None]
) -> dict[str, Any]:
    """``fetch`` the record every :data:`POLL_SECONDS` and ``show`` it until it is no longer
    queued or running; that last record. ``bar`` is closed however the wait ends."""
    try:
        while True:
            record = fetch()
            show(record)
            if record["status"] not in ACTIVE:
                return record
            time.sleep(POLL_SECONDS)
    finally:
        bar.close()


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

    def fetch() -> dict[str, Any]:
        nonlocal since
        run = client.run(run_id, since=since)
        for point in run.get("metrics") or []:
            if point["kind"] == "epoch":
                bar.write(_epoch_line(point), file=sys.stderr)
                if since is None or _time(point["time"]) > _time(since):
                    since = point["time"]
        return run

    def show(run: dict[str, Any]) -> None:
        desc, waiting = _bar_text(run)
        bar.set_description_str(desc, refresh=False)
        bar.set_postfix_str(waiting, refresh=False)
        bar.n = round(100 * run["progress"], 1)
        bar.refresh()
        tenth = 10 * int(bar.n // 10)  # a line per stage, wait and tenth of the way
        lines.show(f"{desc}: {tenth}%" + (f" ({waiting})" if waiting else ""))

    return _poll(bar, fetch, show)


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

    def show(deployment: dict[str, Any]) -> None:
        bar.set_description_str(f"deployment {deployment_id} {deployment['status']}")
        lines.show(f"deployment {deployment_id} {deployment['status']}")

    return _poll(bar, lambda: client.deployment(deployment_id), show)


def wait_for_audit(client: Client, run_id: int, audit_id: int) -> dict[str, Any]:
    """Poll the audit until it is no longer queued or running (a bar of its trainings on
    stderr); its final record."""
    from tqdm import tqdm

    lines = _Lines()
    bar = tqdm(file=sys.stderr, desc=f"audit {audit_id}", unit="training", disable=lines.off)

    def show(audit: dict[str, Any]) -> None:
        bar.total = audit.get("total") or None
        bar.n = audit.get("trained") or 0
        bar.set_description_str(f"audit {audit_id} {audit['status']}")
        lines.show(f"audit {audit_id} {audit['status']}: {bar.n} of {bar.total or '?'} trained")

    return _poll(bar, lambda: client.audit(run_id, audit_id), show)


def stopped_waiting(what: str, after: str = "") -> int:
    """After Ctrl-C in a wait: the work goes on on the server (``after``: how to reach it);
    the exit status."""
    print(f"ponas: stopped waiting; {what} goes on on the server{after}", file=sys.stderr)
    return EXIT_INTERRUPTED


def ended(what: str, record: Mapping[str, Any]) -> str:
    """``run 3 failed: out of memory``: how work that did not succeed ended."""
    reason = f": {record['error']}" if record.get("error") else ""
    return f"{what} {record['status']}{reason}"
