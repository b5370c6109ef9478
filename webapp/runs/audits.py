"""Table audits in the service: what one would train and what that costs, before it starts.

:func:`plan` draws the pools exactly as ``ponas.audit`` does (the same seed, so the finishing
task's report rests on the same networks) and lists the trainings, one worker task each.
:func:`estimate` prices them: trainings x epochs x the run's training images, in worker time
at the speed this run's earlier audit trainings took (else its stage-1 training speed), and
what one more seed or one more epoch adds. Reads only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import median
from typing import Any

from django.conf import settings

from ponas.audit import Recipe, audit_plan
from ponas.table import AccuracyTable
from ponas.units import format_count
from webapp.runs import workers
from webapp.runs.models import AuditNetwork, MetricPoint, SearchRun, Stage


@dataclass
class AuditPlan:
    """The drawn pools (as stored on the audit: candidate names) and the trainings."""

    pools: list[dict[str, Any]]
    trainings: list[tuple[str, list[str], int]]  # (key, candidate names, seed)


def space_size(table: AccuracyTable) -> int:
    """How many networks the table's space holds (what ``ponas.audit`` enumerates)."""
    return math.prod(sum(a is not None for a in row) for row in table.accuracy)


def plan(
    table: AccuracyTable, budgets: list[float], networks: int, epochs: int, seeds: int
) -> AuditPlan:
    """The audit's pools and trainings; ValueError (its message for the user) when a budget
    has too few cost-matched networks or the space is too large to draw from."""
    size, most = space_size(table), settings.PONAS_AUDIT_LIMITS["space"]
    if size > most:
        raise ValueError(
            f"this run's space holds {size:.3g} networks; an audit draws among all of them "
            f"and this server audits spaces of at most {most:,}"
        )
    if "macs" not in table.cost:
        raise ValueError("this table has no MACs costs; an audit ranks against MACs")
    pools, todo = audit_plan(table, budgets, networks, Recipe(epochs=epochs), seeds)
    names = table.candidates
    stored = [
        {
            "budget": p["budget"],
            "matched": p["matched"],
            "pool": [[names[j] for j in arch] for arch in p["pool"]],
            "macs": p["macs"],
            "deployed": [names[j] for j in p["deployed"]],
        }
        for p in pools
    ]
    return AuditPlan(stored, todo)


def _training_images(run: SearchRun) -> int:
    """Training images of the run (its data set less the validation split)."""
    from ponas.plan import estimate as search_estimate
    from webapp.runs.datasets import search_settings

    p = search_estimate(run.preset, search_settings(run.preset, run.config))
    return p.train_images - p.val_images


def _seconds_per_epoch(run: SearchRun, images: int) -> tuple[float | None, str]:
    """Worker seconds one training takes per epoch, and where that figure comes from."""
    done = AuditNetwork.objects.filter(
        audit__run=run, seconds__isnull=False, audit__epochs__gt=0
    ).values_list("seconds", "audit__epochs")[:200]
    per_epoch = [s / e for s, e in done]
    if per_epoch:
        return median(per_epoch), f"the {len(per_epoch)} trainings of this run's earlier audits"
    speeds = [
        v["images_per_s"]
        for v in MetricPoint.objects.filter(
            run=run, stage=Stage.STAGE1, kind=MetricPoint.Kind.EPOCH
        ).values_list("values", flat=True)
        if isinstance(v, dict) and isinstance(v.get("images_per_s"), int | float)
    ]
    if speeds and median(speeds) > 0:
        speed = median(speeds)
        return images / speed, f"this run's stage-1 training speed ({speed:,.0f} images/s)"
    return None, ""


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def estimate(run: SearchRun, audit_plan: AuditPlan, epochs: int, seeds: int) -> dict[str, Any]:
    """What the audit costs: trainings, images, worker time (when a speed is known) and the
    wall time over the live workers of the run's queue; what one more seed or epoch adds."""
    trainings = len(audit_plan.trainings)
    drawn = sum(len(p["pool"]) for p in audit_plan.pools)
    images = _training_images(run)
    per_epoch, source = _seconds_per_epoch(run, images)
    live = len(workers.consumers(run.queue))
    per_seed = trainings // seeds

    def seconds(n_trainings: int, n_epochs: int) -> float | None:
        return None if per_epoch is None else n_trainings * n_epochs * per_epoch

    worker_s = seconds(trainings, epochs)
    more_seed, more_epoch = seconds(per_seed, epochs), seconds(trainings, 1)
    budgets = len(audit_plan.pools)
    text = (
        f"{trainings} trainings ({drawn} drawn networks and the deployed network of each of "
        f"{budgets} budget{'s' * (budgets != 1)}, x {seeds} seed{'s' * (seeds != 1)}), "
        f"{epochs} epoch{'s' * (epochs != 1)} each on {images:,} training images: "
        f"{format_count(trainings * epochs * images)} images"
    )
    if worker_s is not None:
        text += f", about {_duration(worker_s)} of worker time at {source}"
        if live > 1:
            text += f" ({_duration(worker_s / live)} over the {live} live workers of its queue)"
        text += (
            f"; one more seed adds {per_seed} trainings (+{_duration(more_seed)}), one more "
            f"epoch +{_duration(more_epoch)}"
        )
    else:
        text += (
            f"; one more seed adds {per_seed} trainings, one more epoch "
            f"{format_count(trainings * images)} images"
        )
    return {
        "trainings": trainings,
        "drawn": drawn,
        "epochs": epochs,
        "seeds": seeds,
        "training_images": images,
        "images": trainings * epochs * images,
        "seconds_per_epoch": per_epoch,
        "speed_from": source or None,
        "worker_seconds": worker_s,
        "workers": live,
        "wall_seconds": None if worker_s is None else worker_s / max(live, 1),
        "more_seed": {"trainings": per_seed, "worker_seconds": more_seed},
        "more_epoch": {"images": trainings * images, "worker_seconds": more_epoch},
        "text": text + ".",
    }
