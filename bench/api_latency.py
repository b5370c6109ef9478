"""API latency: gunicorn on loopback with 1,000 runs in the database.

Measures, in one run, p50/p95 of
* ``GET /api/runs/``              (the first page of 50 of 1,000 runs)
* ``GET /api/runs/{id}/``         (a random run's detail)
* ``GET /api/runs/{id}/preview/`` (a random MACs budget on a 19 x 12 imagenet-shaped table)
and the ratio of ``preview`` over HTTP to the solver called in-process on the same budgets
(the baseline). Goals: list and detail p95 under 100 ms, preview p95 under 50 ms.

The database is a fresh SQLite file in a temporary folder, or PostgreSQL when
``DATABASE_URL`` is set (then the database ``ponas_bench`` on that server is used and
recreated). One client, keep-alive, sequential requests, after a warm-up.

    python bench/api_latency.py [--quick] [--requests N]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is a folder of scripts
from _server import free_port, wait_until_listening  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
GOALS_MS = {"list": 100.0, "detail": 100.0, "preview": 50.0}


def configure(var_dir: Path) -> dict[str, str]:
    """Environment of both this process and the server: production-like (DEBUG off)."""
    env = {
        "PONAS_VAR_DIR": str(var_dir),
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(40),
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "0",  # plain HTTP on loopback
        "DJANGO_SETTINGS_MODULE": "webapp.settings",
    }
    if os.environ.get("DATABASE_URL"):
        env["DATABASE_NAME"] = "ponas_bench"
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    return env


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def populate(n_runs: int):
    """1,000 runs (various statuses) of one user, one of them with an imagenet-sized table."""
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone
    from knox.models import AuthToken

    if connection.vendor == "postgresql":
        with connection._nodb_cursor() as cursor:
            cursor.execute("DROP DATABASE IF EXISTS ponas_bench")
            cursor.execute("CREATE DATABASE ponas_bench")
    call_command("migrate", verbosity=0)
    from webapp.runs.models import SearchRun, Stage, Status
    from webapp.runs.tables import store_table

    user = get_user_model().objects.create_user("bench", password=secrets.token_urlsafe(12))
    _, token = AuthToken.objects.create(user=user)
    rng = random.Random(0)
    statuses = [Status.SUCCEEDED, Status.FAILED, Status.CANCELLED, Status.RUNNING]
    SearchRun.objects.bulk_create(
        SearchRun(
            owner=user,
            name=f"run {i}",
            preset=rng.choice(["digits", "cifar10", "imagenet"]),
            config={"epochs": rng.randint(1, 300), "seed": i},
            status=rng.choice(statuses),
            progress=rng.random(),
        )
        for i in range(n_runs - 1)
    )
    now = timezone.now()
    run = SearchRun.objects.create(
        owner=user,
        name="imagenet",
        preset="imagenet",
        status=Status.SUCCEEDED,
        stage=Stage.DONE,
        progress=1.0,
        started=now,
        finished=now,
    )
    table = imagenet_table()
    store_table(run, table)
    ids = list(SearchRun.objects.values_list("id", flat=True))
    connection.close()
    return token, run.pk, ids, table


def imagenet_table():
    from ponas.cost import cost_tables
    from ponas.space import load_space
    from ponas.table import AccuracyTable

    space = load_space("imagenet")
    rng = random.Random(1)
    macs = cost_tables(space)[0]["macs"]
    accuracy = [[rng.uniform(0.6, 0.75) for _ in row] for row in macs]
    return AccuracyTable.build(space, accuracy, [space.candidates[0]] * space.num_layers)


def start_server(env: dict[str, str], port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "gunicorn", "webapp.wsgi", "--bind", f"127.0.0.1:{port}"]
    cmd += ["--workers", "2", "--threads", "2", "--log-level", "warning"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **env})
    wait_until_listening(port, proc, 60)
    return proc


def timed_gets(port: int, token: str, urls: list[str]) -> list[float]:
    """Milliseconds per request, one keep-alive connection; every answer must be a 200."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Token {token}", "Accept": "application/json"}
    times = []
    for url in urls:
        t0 = time.perf_counter()
        conn.request("GET", url, headers=headers)
        response = conn.getresponse()
        body = response.read()
        times.append(1000 * (time.perf_counter() - t0))
        if response.status != 200:
            raise SystemExit(f"GET {url}: {response.status} {body[:300]!r}")
    conn.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 requests per endpoint")
    parser.add_argument("--requests", type=int, default=None)
    parser.add_argument("--runs", type=int, default=1000)
    args = parser.parse_args()
    n = args.requests or (100 if args.quick else 500)

    with tempfile.TemporaryDirectory(prefix="ponas-bench-") as tmp:
        env = configure(Path(tmp))
        token, table_run, ids, table = populate(args.runs)
        from ponas.solve import solve

        lo = table.base_cost["macs"] + sum(min(r) for r in table.cost["macs"])
        hi = table.base_cost["macs"] + sum(max(r) for r in table.cost["macs"])
        rng = random.Random(2)
        budgets = [int(rng.uniform(lo, hi)) for _ in range(n)]
        port = free_port()
        server = start_server(env, port)
        try:
            urls = {
                "list": ["/api/runs/"] * n,
                "detail": [f"/api/runs/{rng.choice(ids)}/" for _ in range(n)],
                "preview": [f"/api/runs/{table_run}/preview/?max_macs={b}" for b in budgets],
            }
            # warm-up: imports, connections, each gunicorn worker's table cache
            for u in urls.values():
                timed_gets(port, token, u[:20])
            results = {name: timed_gets(port, token, u) for name, u in urls.items()}
            first = json.loads(_get(port, token, urls["preview"][0]))
        finally:
            server.terminate()
            server.wait(timeout=30)

        solve(table, {"macs": float(budgets[0])})  # warm: the compiled table is cached
        in_process = []
        for b in budgets:
            t0 = time.perf_counter()
            selection = solve(table, {"macs": float(b)})
            in_process.append(1000 * (time.perf_counter() - t0))
        assert selection.cost["macs"] <= budgets[-1]
        assert first == solve(table, {"macs": float(budgets[0])}).to_dict()

    db = "PostgreSQL" if os.environ.get("DATABASE_URL") else "SQLite"
    print(
        f"API latency: gunicorn (2 workers) on loopback, {db}, {args.runs} runs, "
        f"{n} sequential requests per endpoint, 19x12 imagenet-shaped table"
    )
    ok = True
    for name, times in results.items():
        p50, p95 = statistics.median(times), percentile(times, 0.95)
        met = p95 < GOALS_MS[name]
        ok &= met
        print(
            f"  {name:8s} p50 {p50:7.2f} ms   p95 {p95:7.2f} ms   goal p95 < {GOALS_MS[name]:.0f} ms"
            f"  {'ok' if met else 'MISSED'}"
        )
    solver_p50 = statistics.median(in_process)
    http_p50 = statistics.median(results["preview"])
    print(
        f"  solver in-process p50 {solver_p50:.3f} ms, p95 {percentile(in_process, 0.95):.3f} ms;"
        f" preview over HTTP / in-process (p50): {http_p50 / solver_p50:.1f}x"
    )
    if not ok:
        sys.exit(1)


def _get(port: int, token: str, url: str) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", url, headers={"Authorization": f"Token {token}"})
    body = conn.getresponse().read()
    conn.close()
    return body


if __name__ == "__main__":
    main()
