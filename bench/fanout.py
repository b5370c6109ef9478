"""Fan-out overhead: the digits search through one real Celery worker (every stage-2
candidate a task, as a fleet runs it) against `ponas search` in one process, on the same
machine in the same run (the baseline). Prints both wall times and their ratio (goal: at most
1.10x), and the per-candidate overhead: a candidate task's time minus the candidate's own
compute (fine-tune and scoring), as a share of that compute, from the worker's log.

The worker keeps a layer's checkpoint, data and prefix features for the next candidate of the
same run and layer, so only a layer's first candidate pays for loading them.

    python bench/fanout.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from api_latency import configure  # noqa: E402

QUICK = {"epochs": 4, "finetune_steps": 5, "suffix_samples": 2}
TASK_LINE = re.compile(r"^\[.*layer \d+ \S+: task ([\d.]+) s, compute ([\d.]+) s \(reused: (\w+)\)")


def through_worker(overrides: dict, var_dir: Path, env: dict) -> tuple[float, Path]:
    """Wall time of one run from queued to succeeded through one solo worker (started and
    ready before the clock starts); the worker's log."""
    from django.contrib.auth import get_user_model

    from webapp.runs import services
    from webapp.runs.models import SearchRun, Status, Worker

    log = var_dir / "worker.log"
    cmd = [sys.executable, "-m", "celery", "-A", "webapp", "worker", "-P", "solo"]
    cmd += ["-n", "bench@local", "-l", "info", "--without-mingle", "--without-gossip"]
    with open(log, "wb") as out:
        worker = subprocess.Popen(cmd, env={**os.environ, **env}, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 120
        while not Worker.objects.filter(name="bench@local").exists():  # it recorded itself
            assert worker.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        user, _ = get_user_model().objects.get_or_create(username="bench")
        t0 = time.perf_counter()
        run = services.create_run(
            user, name="bench", preset="digits", config=overrides, queue="gpu"
        )
        while (run := SearchRun.objects.get(pk=run.pk)).status in (Status.QUEUED, Status.RUNNING):
            assert worker.poll() is None, log.read_text()[-4000:]
            time.sleep(0.1)
        took = time.perf_counter() - t0
        assert run.status == Status.SUCCEEDED, f"{run.error}\n{log.read_text()[-4000:]}"
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    return took, log


def in_one_process(overrides: dict, out: Path) -> float:
    from ponas.search import run_search

    t0 = time.perf_counter()
    run_search("digits", overrides, out)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short search (seconds)")
    args = parser.parse_args()
    overrides = QUICK if args.quick else {}
    with tempfile.TemporaryDirectory() as tmp:
        var_dir = Path(tmp)
        env = configure(var_dir)
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        baseline = in_one_process(overrides, var_dir / "sequential")
        fleet, log = through_worker(overrides, var_dir, env)
        tasks = [
            m.groups() for line in log.read_text().splitlines() if (m := TASK_LINE.match(line))
        ]
    total = sum(float(t) for t, _, _ in tasks)
    compute = sum(float(c) for _, c, _ in tasks)
    fresh = [(float(t), float(c)) for t, c, reused in tasks if reused == "False"]
    kept = [(float(t), float(c)) for t, c, reused in tasks if reused == "True"]

    def share(pairs: list[tuple[float, float]]) -> str:
        spent, own = sum(t for t, _ in pairs), sum(c for _, c in pairs)
        return f"{100 * (spent - own) / max(own, 1e-9):.0f}%" if pairs else "-"

    print(f"digits search{' (quick)' if args.quick else ''}:")
    print(f"  ponas search, one process:  {baseline:7.1f} s")
    print(f"  through one worker:         {fleet:7.1f} s   ratio {fleet / baseline:.2f}x")
    print(
        f"  candidate tasks: {len(tasks)}; overhead (task time - compute) as a share of "
        f"compute: {share([(float(t), float(c)) for t, c, _ in tasks])} overall, "
        f"{share(fresh)} for a layer's first candidate ({len(fresh)}), "
        f"{share(kept)} for the others ({len(kept)}, layer kept)"
    )
    print(f"  (candidate compute {compute:.1f} s of {total:.1f} s in candidate tasks)")


if __name__ == "__main__":
    main()
