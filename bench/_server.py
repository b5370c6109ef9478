"""A gunicorn server for the benches: a free loopback port, and waiting until it listens.

Imported by the bench scripts (``bench/`` is a folder of scripts, each runnable as
``python bench/x.py``), not a bench itself.
"""

from __future__ import annotations

import socket
import subprocess
import time


def free_port() -> int:
    """A loopback TCP port no one listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_listening(port: int, server: subprocess.Popen, seconds: float) -> None:
    """Return once ``server`` accepts connections on ``port``; exit the bench if it dies first
    or does not listen within ``seconds`` (then it is killed)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if server.poll() is not None:
                raise SystemExit(f"gunicorn exited ({server.returncode})") from None
            time.sleep(0.2)
    server.kill()
    raise SystemExit(f"gunicorn did not start in {seconds:g} s")
