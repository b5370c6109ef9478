"""`manage.py runlocal` (what `make run` does): migrate, make sure a local admin exists,
then serve on 127.0.0.1:8000 (gunicorn) with one Celery worker and Celery beat (the watchdog's
schedule); Ctrl-C stops them all."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

PASSWORD_FILE = "admin-password.txt"


class Command(BaseCommand):
    help = (
        "Migrate, create a local admin if there is none, run the web server, one worker and beat."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)

    def handle(self, *args, host: str, port: int, **options) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        self.ensure_admin()
        if not settings.DEBUG:
            call_command("collectstatic", interactive=False, verbosity=0)
        python = sys.executable
        commands = {
            "web": [python, "-m", "gunicorn", "webapp.wsgi", "--bind", f"{host}:{port}"]
            + ["--workers", "2", "--threads", "4", "--access-logfile", "-"],
            # solo pool: one task at a time in the worker's process, which lets a running
            # search stop at its next step on Ctrl-C and go back to the queue
            "worker": [python, "-m", "celery", "-A", "webapp", "worker", "-Q", "default,gpu"]
            + ["-P", "solo", "-n", "local@%h", "-l", "info"]
            + ["--without-mingle", "--without-gossip", "--without-heartbeat"],
            # sends the watchdog's look every PONAS_WATCHDOG_SECONDS (its schedule file in var/)
            "beat": [python, "-m", "celery", "-A", "webapp", "beat", "-l", "info"]
            + ["-s", settings.CELERY_BEAT_SCHEDULE_FILENAME],
        }
        broker = settings.CELERY_BROKER_URL.split("://")[0]
        self.stdout.write(
            f"PONAS Studio on http://{host}:{port}/ (API docs: /api/docs/, admin: /admin/); "
            f"database {settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]}, "
            f"broker {broker}, artifacts {settings.MEDIA_ROOT}. Ctrl-C stops."
        )
        # own sessions: Ctrl-C reaches only us, and we stop the children in order
        procs = {
            name: subprocess.Popen(cmd, cwd=settings.BASE_DIR, start_new_session=True)
            for name, cmd in commands.items()
        }
        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        while not stopping and all(p.poll() is None for p in procs.values()):
            time.sleep(0.2)
        for name, proc in procs.items():
            if proc.poll() is not None and not stopping:
                self.stderr.write(f"the {name} process exited ({proc.returncode}); stopping")
        self.shutdown(procs)

    def shutdown(self, procs: dict[str, subprocess.Popen]) -> None:
        """SIGTERM: gunicorn and beat stop, the worker stops its task at the next step (back to
        the queue, resumed next time); anything still alive after 30 s is killed."""
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for name, proc in procs.items():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.stderr.write(f"the {name} process did not stop in 30 s; killing it")
                proc.kill()
                proc.wait()
        self.stdout.write("stopped")

    def ensure_admin(self) -> None:
        """Create ``admin`` with a generated password if there is no superuser; the password
        is printed this once and kept in var/admin-password.txt (readable by you only)."""
        users = get_user_model().objects
        saved = Path(settings.VAR_DIR) / PASSWORD_FILE
        if users.filter(is_superuser=True).exists():
            if saved.exists():
                self.stdout.write(f"admin user exists; its generated password is in {saved}")
            return
        password = secrets.token_urlsafe(12)
        users.create_superuser("admin", "", password)
        saved.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(saved, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"username: admin\npassword: {password}\n")
        self.stdout.write(
            self.style.SUCCESS(
                f"created the local admin user: username admin, password {password} "
                f"(saved in {saved})"
            )
        )
