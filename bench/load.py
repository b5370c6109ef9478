"""Load: 50 concurrent clients for 30 seconds against gunicorn on loopback.

Each client loops over the four things the dashboard and scripts do most (the runs list, a
run's detail, a budget preview, the table download), on its own keep-alive connection, until
the time is up or the request cap is reached. Prints requests/s, p50/p95 and errors, and the
p95 under load divided by the p95 of one client alone measured in the same run (the baseline).
Goal: zero errors, p95 under 200 ms. Loopback only; bounded in count and time.

    python bench/load.py [--quick] [--clients 50] [--seconds 30]
"""

from __future__ import annotations

import argparse
import http.client
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from api_latency import configure, free_port, percentile, populate, start_server  # noqa: E402

MAX_REQUESTS = 200_000  # a hard cap, whatever the speed


def client_loop(port, token, urls, deadline, cap, out, errors, seed):
    rng = random.Random(seed)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Token {token}", "Accept": "application/json"}
    while time.monotonic() < deadline and cap.acquire(blocking=False):
        kind, url = rng.choice(urls)
        t0 = time.perf_counter()
        try:
            conn.request("GET", url, headers=headers)
            response = conn.getresponse()
            response.read()
            ok = response.status == 200
        except (OSError, http.client.HTTPException):
            ok = False
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        out.append((kind, 1000 * (time.perf_counter() - t0)))
        if not ok:
            errors.append(url)
    conn.close()


def drive(port, token, urls, clients, seconds):
    out, errors = [], []
    cap = threading.Semaphore(MAX_REQUESTS)
    deadline = time.monotonic() + seconds
    threads = [
        threading.Thread(
            target=client_loop, args=(port, token, urls, deadline, cap, out, errors, i)
        )
        for i in range(clients)
    ]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out, errors, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--quick", action="store_true", help="10 seconds")
    args = parser.parse_args()
    seconds = 10.0 if args.quick else args.seconds

    with tempfile.TemporaryDirectory(prefix="ponas-load-") as tmp:
        env = configure(Path(tmp))
        token, table_run, ids, table = populate(1000)
        lo = table.base_cost["macs"] + sum(min(r) for r in table.cost["macs"])
        hi = table.base_cost["macs"] + sum(max(r) for r in table.cost["macs"])
        rng = random.Random(3)
        urls = [("list", "/api/runs/"), ("table", f"/api/runs/{table_run}/table/")]
        urls += [("detail", f"/api/runs/{rng.choice(ids)}/") for _ in range(20)]
        urls += [
            ("preview", f"/api/runs/{table_run}/preview/?max_macs={int(rng.uniform(lo, hi))}")
            for _ in range(20)
        ]
        port = free_port()
        server = start_server(env, port)
        try:
            drive(port, token, urls, 4, 3)  # warm-up: every worker's imports and table cache
            alone, alone_errors, _ = drive(port, token, urls, 1, min(5.0, seconds))
            loaded, errors, elapsed = drive(port, token, urls, args.clients, seconds)
        finally:
            server.terminate()
            server.wait(timeout=30)

    times = [ms for _, ms in loaded]
    p95_alone = percentile([ms for _, ms in alone], 0.95)
    p95 = percentile(times, 0.95)
    print(
        f"load: {args.clients} clients for {seconds:.0f} s against gunicorn (2 workers x 2 "
        "threads) on loopback; list, detail, preview, table download"
    )
    print(
        f"  {len(times)} requests, {len(times) / elapsed:.0f} requests/s, "
        f"errors {len(errors) + len(alone_errors)}"
    )
    print(f"  p50 {statistics.median(times):.1f} ms, p95 {p95:.1f} ms (goal < 200 ms)")
    for kind in ("list", "detail", "preview", "table"):
        k = [ms for name, ms in loaded if name == kind]
        if k:
            print(
                f"    {kind:8s} n={len(k):6d}  p50 {statistics.median(k):7.1f} ms  p95 "
                f"{percentile(k, 0.95):7.1f} ms"
            )
    print(
        f"  baseline: one client alone p95 {p95_alone:.1f} ms; under load / alone = "
        f"{p95 / p95_alone:.1f}x"
    )
    if errors or alone_errors:
        sys.exit(1)


if __name__ == "__main__":
    main()
