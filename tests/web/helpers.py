"""Helpers of the service tests: API clients with tokens, runs with a stored table."""

from __future__ import annotations

import random

from django.utils import timezone
from knox.models import AuthToken
from rest_framework.test import APIClient

from ponas.space import load_space
from ponas.table import AccuracyTable
from webapp.runs.models import Membership, SearchRun, Stage, Status, Team
from webapp.runs.tables import store_table


def client_for(user) -> APIClient:
    client = APIClient()
    _, token = AuthToken.objects.create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def digits_table(seed: int = 0) -> AccuracyTable:
    """A full digits table with made-up accuracies (what a search would store)."""
    space = load_space("digits")
    rng = random.Random(seed)
    accuracy = [
        [
            round(rng.uniform(0.5, 0.99), 6) if space.allowed(i, c) else None
            for c in space.candidates
        ]
        for i in range(space.num_layers)
    ]
    path = [
        max((a, c) for a, c in zip(row, space.candidates, strict=True) if a is not None)[1]
        for row in accuracy
    ]
    meta = {"dataset": "digits", "seed": seed, "created": "2025-01-01T00:00:00+00:00"}
    return AccuracyTable.build(space, accuracy, path, meta)


def make_run(owner, status: str = Status.QUEUED, **fields) -> SearchRun:
    fields.setdefault("name", "digits search")
    return SearchRun.objects.create(owner=owner, preset="digits", status=status, **fields)


def make_finished_run(owner, seed: int = 0) -> SearchRun:
    now = timezone.now()
    run = make_run(
        owner, Status.SUCCEEDED, stage=Stage.DONE, progress=1.0, started=now, finished=now
    )
    store_table(run, digits_table(seed))
    return run


def make_team(name: str, members=(), admins=()) -> Team:
    """A team with these users as members and these as admins."""
    team = Team.objects.create(name=name)
    for role, users in ((Membership.Role.MEMBER, members), (Membership.Role.ADMIN, admins)):
        for user in users:
            Membership.objects.create(team=team, user=user, role=role)
    return team


def hold_lease(work, seconds_ago: float, key: str = "stage1", worker: str = "w1@gone") -> None:
    """A lease on ``work`` (a run, for its current attempt; or a deployment) held by a task
    of ``worker`` and last renewed ``seconds_ago``: what a worker that vanished leaves."""
    from datetime import timedelta

    from webapp.runs.models import Deployment, Lease

    renewed = timezone.now() - timedelta(seconds=seconds_ago)
    is_build = isinstance(work, Deployment)
    work.refresh_from_db()
    Lease.objects.update_or_create(
        key=f"deployment {work.pk}" if is_build else f"run {work.pk} {key}",
        defaults={
            "run": None if is_build else work,
            "deployment": work if is_build else None,
            "attempt": 0 if is_build else work.attempt,
            "worker": worker,
            "host": "gone-host",
            "pid": 1,
            "task_id": "task-of-a-gone-worker",
            "taken": renewed,
            "renewed": renewed,
        },
    )


def running_again(work, seconds_ago: float) -> None:
    """Put re-queued work back to running, lost again (its new lease expired too)."""
    type(work).objects.filter(pk=work.pk).update(status=Status.RUNNING)
    hold_lease(work, seconds_ago)


def uncertain_table(close_layer: int = 1, suffixes: int = 4) -> AccuracyTable:
    """The digits table of :func:`digits_table` as a search with ``suffixes`` evaluation
    suffixes records it: every entry with a small standard error, except at ``close_layer``,
    whose best and second-best entries get errors as large as the gap between them (the
    table cannot separate those two); meta says how the validation subset was drawn."""
    d = digits_table().to_dict()
    stderr = [[None if a is None else 0.001 for a in row] for row in d["accuracy"]]
    row = d["accuracy"][close_layer]
    best, second = sorted((j for j, a in enumerate(row) if a is not None), key=lambda j: -row[j])[
        :2
    ]
    gap = row[best] - row[second]
    stderr[close_layer][best] = stderr[close_layer][second] = round(max(gap, 0.001), 6)
    d["stderr"] = stderr
    d["meta"]["config"] = {"dataset": "digits", "suffix_samples": suffixes}
    d["meta"]["validation"] = {"images": 300, "of": 300, "drawn": "the whole validation split"}
    return AccuracyTable.from_dict(d)
