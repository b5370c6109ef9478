"""A table audit through the service: a tiny digits search's table audited at 3 MACs budgets x
3 networks, 1 epoch (the default; flags change it), once through one real Celery worker (one
task per training, then the finishing task) and once in one process with ``ponas.audit``
(the baseline, same machine, same run). Prints both wall times, their ratio, the median
training, the service's own estimate beside what it took, and whether the two reports agree.

    python bench/audit_service.py [--budgets 1.4M 1.6M 1.9M] [--networks 3] [--epochs 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from api_latency import configure  # noqa: E402

# the tests' tiny digits search (tests/conftest.py): a real table in seconds
SEARCH = {"epochs": 2, "batch_size": 32, "finetune_steps": 2, "suffix_samples": 2}
SEARCH.update(bn_batches=1, eval_batches=1, val_size=64)


def through_worker(run, fields: dict, var_dir: Path, env: dict):
    """Wall time of one audit from its request to succeeded through one solo worker (started
    and ready before the clock starts); the audit."""
    from rest_framework.test import APIRequestFactory

    from webapp.runs import services
    from webapp.runs.models import Audit, AuditNetwork, Status, Worker
    from webapp.runs.serializers import AuditSerializer

    log = var_dir / "worker.log"
    cmd = [sys.executable, "-m", "celery", "-A", "webapp", "worker", "-P", "solo"]
    cmd += ["-n", "bench@local", "-l", "info", "--without-mingle", "--without-gossip"]
    env = {**os.environ, **env, "PONAS_TORCH_THREADS": "1"}
    with open(log, "wb") as out:
        worker = subprocess.Popen(cmd, env=env, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 120
        while not Worker.objects.filter(name="bench@local").exists():  # it recorded itself
            assert worker.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        request = APIRequestFactory().post("/")
        request.user = run.owner
        t0 = time.perf_counter()
        serializer = AuditSerializer(data=fields, context={"run": run, "request": request})
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        audit = services.start_audit(run, run.owner, data.pop("plan"), **data)
        while (audit := Audit.objects.get(pk=audit.pk)).status in (Status.QUEUED, Status.RUNNING):
            assert worker.poll() is None, log.read_text()[-4000:]
            time.sleep(0.1)
        took = time.perf_counter() - t0
        assert audit.status == Status.SUCCEEDED, f"{audit.error}\n{log.read_text()[-4000:]}"
        seconds = list(AuditNetwork.objects.filter(audit=audit).values_list("seconds", flat=True))
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    return took, audit, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", nargs="+", default=["1.4M", "1.6M", "1.9M"])
    parser.add_argument("--networks", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        var_dir = Path(tmp)
        env = configure(var_dir)
        import django

        django.setup()
        import torch
        from django.contrib.auth import get_user_model
        from django.core.management import call_command
        from django.utils import timezone

        from ponas.audit import Recipe, run_audit
        from ponas.search import run_search
        from ponas.units import parse_budget
        from webapp.runs.models import SearchRun, Stage, Status
        from webapp.runs.tables import store_table

        call_command("migrate", verbosity=0)
        torch.set_num_threads(1)  # as the worker (PONAS_TORCH_THREADS=1)
        table = run_search("digits", SEARCH, var_dir / "search")
        user, _ = get_user_model().objects.get_or_create(username="bench")
        now = timezone.now()
        run = SearchRun.objects.create(
            owner=user, preset="digits", config=SEARCH, status=Status.SUCCEEDED,
            stage=Stage.DONE, progress=1.0, started=now, finished=now, queue="gpu",
        )  # fmt: skip
        store_table(run, table)
        run.refresh_from_db()
        budgets = [parse_budget(b) for b in args.budgets]

        t0 = time.perf_counter()
        local = run_audit(table, budgets, args.networks, Recipe(epochs=args.epochs))
        baseline = time.perf_counter() - t0
        fields = {"budgets": args.budgets, "networks": args.networks, "epochs": args.epochs}
        took, audit, seconds = through_worker(run, fields, var_dir, env)

    same = [
        (a["tau_table"], a["tau_macs"], a["truth"]) == (b["tau_table"], b["tau_macs"], b["truth"])
        for a, b in zip(local["budgets"], audit.results["budgets"], strict=True)
    ]
    print(
        f"audit of the tiny digits search: {len(budgets)} budgets x {args.networks} networks, "
        f"{args.epochs} epoch(s): {audit.total} trainings"
    )
    print(f"  ponas.audit, one process:   {baseline:7.1f} s")
    print(f"  through one worker:         {took:7.1f} s   ratio {took / baseline:.2f}x")
    print(
        f"  a training (task's own wall time): median {statistics.median(seconds):.1f} s, "
        f"sum {sum(seconds):.1f} s"
    )
    print(f"  the service's estimate: {audit.estimate['text']}")
    print(f"  the same figures in both: {'yes' if all(same) else 'no'} (per budget {same})")
    for fig in audit.results["budgets"]:
        print(f"  {fig['sentence']}")


if __name__ == "__main__":
    main()
