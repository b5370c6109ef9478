"""Web worker memory: the resident size of a gunicorn worker that has loaded the URLconf and
served the runs list, for this checkout and for a baseline commit, in the same run.

Until issue 19 the web app imported torch through its serializers (config validation went
through ``ponas.search``, which loaded the training code), so every web worker held torch's
libraries although no request computes with them. The baseline is by default the last commit
before that change (``94bb5cf``); its tree is taken with ``git archive`` into a temporary
folder, nothing in this checkout changes. Each tree gets its own SQLite database with
``--runs`` runs of one user; one gunicorn worker (1 thread) answers ``GET /api/runs/`` a few
times, then its memory is read from ``/proc``: resident (VmRSS), peak (VmHWM), private
(Private_Clean + Private_Dirty: what the process alone holds) and whether libtorch is mapped.

    python bench/web_memory.py [--quick] [--baseline REV] [--runs N]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is a folder of scripts
from _server import free_port, wait_until_listening  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BASELINE = "94bb5cf"  # main before the web app stopped importing torch (issue 19, item 4)

POPULATE = """
import django, json, random
django.setup()
from django.contrib.auth import get_user_model
from django.core.management import call_command
from knox.models import AuthToken
from webapp.runs.models import SearchRun, Status
call_command("migrate", verbosity=0)
user = get_user_model().objects.create_user("bench", password="not-used-by-the-bench-1")
_, token = AuthToken.objects.create(user=user)
rng = random.Random(0)
SearchRun.objects.bulk_create(
    SearchRun(owner=user, name=f"run {i}", preset=rng.choice(["digits", "cifar10", "imagenet"]),
              config={"epochs": rng.randint(1, 300)}, status=rng.choice(list(Status)),
              progress=rng.random())
    for i in range(%d)
)
print(json.dumps({"token": token}))
"""


def environment(var_dir: Path) -> dict[str, str]:
    """Production-like settings (DEBUG off) on a database of the tree's own."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DATABASE_NAME")}
    return {
        **env,
        "PONAS_VAR_DIR": str(var_dir),
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(40),
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "0",
        "DJANGO_SETTINGS_MODULE": "webapp.settings",
    }


def extract(rev: str, dest: Path) -> Path:
    """The tree of commit ``rev`` under ``dest`` (read from git; the checkout is untouched)."""
    archive = dest.with_suffix(".tar")
    done = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", "-o", str(archive), rev],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"web_memory: cannot read commit {rev!r}: {done.stderr.strip()}")
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    return dest


def memory(pid: int) -> dict[str, float]:
    """MiB resident, peak and private of ``pid``, and whether it maps libtorch."""
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    rollup = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    private = sum(int(line.split()[1]) for line in rollup if line.startswith("Private_"))
    maps = Path(f"/proc/{pid}/maps").read_text()
    return {
        "rss": int(fields["VmRSS"].split()[0]) / 1024,
        "peak": int(fields["VmHWM"].split()[0]) / 1024,
        "private": private / 1024,
        "torch": "libtorch" in maps,
    }


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def measure(tree: Path, var_dir: Path, n_runs: int, requests: int) -> dict[str, float]:
    """Populate the tree's database, start one gunicorn worker, serve the runs list, measure."""
    env = environment(var_dir)
    done = subprocess.run(
        [sys.executable, "-c", POPULATE % n_runs],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise SystemExit(f"web_memory: populating {tree} failed:\n{done.stderr[-2000:]}")
    token = json.loads(done.stdout.strip().splitlines()[-1])["token"]
    port = free_port()
    cmd = [sys.executable, "-m", "gunicorn", "webapp.wsgi", "--bind", f"127.0.0.1:{port}"]
    cmd += ["--workers", "1", "--threads", "1", "--log-level", "warning"]
    server = subprocess.Popen(cmd, cwd=tree, env=env)
    try:
        wait_until_listening(port, server, 120)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for _ in range(requests):
            conn.request("GET", "/api/runs/", headers={"Authorization": f"Token {token}"})
            response = conn.getresponse()
            body = response.read()
            if response.status != 200:
                raise SystemExit(f"GET /api/runs/ in {tree}: {response.status} {body[:300]!r}")
        conn.close()
        workers = children(server.pid)
        if len(workers) != 1:
            raise SystemExit(f"web_memory: expected one gunicorn worker, found {workers}")
        return memory(workers[0])
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 runs, 5 requests")
    parser.add_argument(
        "--baseline", default=BASELINE, help=f"commit to compare (default {BASELINE})"
    )
    parser.add_argument("--runs", type=int, default=None, help="runs in each database (1000)")
    args = parser.parse_args()
    n_runs = args.runs or (100 if args.quick else 1000)
    requests = 5 if args.quick else 20

    with tempfile.TemporaryDirectory(prefix="ponas-bench-") as tmp:
        base_tree = extract(args.baseline, Path(tmp) / "baseline")
        results = {
            f"baseline {args.baseline}": measure(
                base_tree, Path(tmp) / "var-base", n_runs, requests
            ),
            "this checkout": measure(ROOT, Path(tmp) / "var-this", n_runs, requests),
        }

    print(
        f"Web worker memory: one gunicorn worker after {requests} x GET /api/runs/ "
        f"({n_runs} runs, SQLite, DEBUG off)"
    )
    for name, m in results.items():
        print(
            f"  {name:18s} resident {m['rss']:6.0f} MiB   peak {m['peak']:6.0f} MiB   "
            f"private {m['private']:6.0f} MiB   libtorch {'loaded' if m['torch'] else 'not loaded'}"
        )
    base, this = results.values()
    print(
        f"  baseline / this checkout: resident {base['rss'] / this['rss']:.1f}x, "
        f"private {base['private'] / this['private']:.1f}x"
    )
    if this["torch"]:
        print("  this checkout's web worker loaded torch", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
