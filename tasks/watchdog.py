"""Looking for runs, deployment builds and device profiles whose worker vanished (the logic lives in
:mod:`webapp.runs.watchdog`; a re-queued run goes to whichever worker takes its
``run_search``, and it continues from its checkpoint). Two lookers:

- every worker, once when it is ready (so a worker started after a crash picks the lost run
  up at once) and then every ``PONAS_WATCHDOG_SECONDS``, in a thread (which also records the
  worker in the registry, ``tasks.registry``: its own heartbeat);
- the periodic task :func:`reap_stuck_work`, which Celery beat (``CELERY_BEAT_SCHEDULE``,
  started by ``make run``) sends to ``default`` as often: one schedule for the whole service,
  whichever workers run. (The web server never looks: reads change nothing.)
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from celery import shared_task
from celery.signals import worker_ready, worker_shutting_down
from django.conf import settings
from django.db import connection

from tasks import registry
from tasks.progress import log
from webapp.runs.watchdog import reap_all

_stop = threading.Event()


def look() -> None:
    """One look at runs, deployment builds and device profiles; what it re-queued or failed
    goes to the log."""
    for what, reaped in reap_all().items():
        if reaped:
            log.warning(
                "watchdog: %s re-queued %s, failed %s", what, reaped.requeued, reaped.failed
            )


def clean_processed_messages() -> int:
    """Remove the embedded broker's delivered messages older than
    ``PONAS_BROKER_KEEP_SECONDS``; how many were removed. Nothing on Redis.

    kombu's filesystem transport claims a message by moving it into ``processed/`` (atomic
    on one filesystem, so several workers can share a queue) and keeps it there; it reads it
    at once, and nothing ever delivers it again: without this, one file per message forever."""
    if not settings.CELERY_BROKER_URL.startswith("filesystem:"):
        return 0
    folder = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["processed_folder"])
    old = time.time() - settings.PONAS_BROKER_KEEP_SECONDS
    removed = 0
    for path in folder.glob("*.msg"):
        try:
            stat = path.stat()  # (a move into the folder sets ctime: just delivered, kept)
            if max(stat.st_mtime, stat.st_ctime) < old:
                path.unlink()
                removed += 1
        except FileNotFoundError:  # another worker removed it meanwhile
            pass
    return removed


@shared_task(name="tasks.watchdog.reap_stuck_work")
def reap_stuck_work() -> None:
    """Re-queue (or fail) running work without a recent heartbeat: what beat sends."""
    look()


def _watch() -> None:
    while True:
        try:
            registry.record()  # the worker's own heartbeat (the workers page, lost leases)
            look()
            clean_processed_messages()
        except Exception:  # the database may be away for a while; look again later
            log.exception("watchdog: could not look for stuck runs")
        finally:
            connection.close()  # this thread's own connection; none kept between looks
        if _stop.wait(settings.PONAS_WATCHDOG_SECONDS):
            return


@worker_ready.connect
def start_watchdog(**_: Any) -> None:
    # (connected after registry's: the worker has recorded itself before the first look)
    threading.Thread(target=_watch, name="ponas-watchdog", daemon=True).start()


@worker_shutting_down.connect
def stop_watchdog(**_: Any) -> None:
    _stop.set()
