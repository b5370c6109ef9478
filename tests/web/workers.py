"""Real Celery worker processes for integration tests, on the test database and broker.

With ``DATABASE_URL``/``REDIS_URL`` set (CI) they use PostgreSQL and Redis; otherwise the
SQLite test file and the filesystem broker. No mocks: the worker is ``celery -A webapp worker``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.db import connection

from webapp.celery import app


class Workers:
    """Starts ``n`` workers (solo pool, or ``pool``, one process each) named ``w1@test`` ...;
    ``stop()`` shuts them down."""

    def __init__(
        self, n: int, log_dir: Path, queues: str = "default,gpu", pool: str = "solo"
    ) -> None:
        # nothing left over on `default` from an earlier test (as before both queues were
        # declared: work a test queued on `gpu` before starting its workers stays)
        with app.connection_for_write() as conn:
            conn.default_channel.queue_purge("default")
        env = {
            **os.environ,
            "PONAS_TESTING": "1",
            "PONAS_TEST_ID": settings.TEST_ID,
            "DATABASE_NAME": str(connection.settings_dict["NAME"]),
            "MEDIA_ROOT": str(settings.MEDIA_ROOT),
            "PONAS_POLL_SECONDS": "0.5",
            "PONAS_TORCH_THREADS": "1",  # two workers and the tests share 2 cores
        }
        self.logs = [log_dir / f"worker{i + 1}.log" for i in range(n)]
        self.names = [f"w{i + 1}@test" for i in range(n)]
        self.procs = []
        for name, log in zip(self.names, self.logs, strict=True):
            cmd = [sys.executable, "-m", "celery", "-A", "webapp", "worker", "-Q", queues]
            cmd += ["-P", pool, "-c", "1", "-n", name, "-l", "info"]
            cmd += ["--without-mingle", "--without-gossip", "--without-heartbeat"]
            with open(log, "wb") as out:
                self.procs.append(
                    subprocess.Popen(
                        cmd,
                        cwd=settings.BASE_DIR,
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )

    def output(self) -> str:
        return "\n".join(f"==== {p.name}\n{p.read_text()[-6000:]}" for p in self.logs)

    def check_alive(self) -> None:
        for proc, name in zip(self.procs, self.names, strict=True):
            if proc.poll() is not None:
                raise AssertionError(f"worker {name} exited ({proc.returncode}):\n{self.output()}")

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)  # warm shutdown
        deadline = time.monotonic() + 20
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def sequential_table(preset: str, config: dict, out: Path):
    """The table of one uninterrupted, in-process search with the same settings, computed
    with one torch thread as the workers are (float sums depend on the thread count)."""
    import torch

    from ponas.search import run_search

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_search(preset, config, out)
    finally:
        torch.set_num_threads(threads)
