"""The state changes of runs and deployments: what a user (through a page or the API) and
the watchdog may do to them. Views and viewsets validate, call one of these and serialize;
the choice of a deployment's network (the solver on the run's table) is made here too.

Each transition is a conditional UPDATE on the status it starts from, so two requests (or a
request and a worker) that race cannot both win. Work goes to the workers as Celery tasks sent
by name once the transaction that made the change commits: the web app never imports
``tasks/`` (the workers register these names there).
"""

from __future__ import annotations

import shutil
from functools import partial
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from ponas.solve import Infeasible, Selection, solve
from ponas.table import AccuracyTable
from webapp.celery import app
from webapp.runs.leases import holder_alive
from webapp.runs.models import (
    ACTIVE,
    Audit,
    AuditNetwork,
    Deployment,
    DeviceProfile,
    Lease,
    SearchRun,
    Status,
)
from webapp.runs.tables import accuracy_table

# Task names, as tasks/ registers them (``@shared_task(name=...)``).
RUN_SEARCH = "tasks.search.run_search"
BUILD_DEPLOYMENT = "tasks.deploy.build_deployment"
PROFILE_LATENCY = "tasks.profile.profile_latency"
TRAIN_AUDIT_NETWORK = "tasks.audit.train_network"
FINISH_AUDIT = "tasks.audit.finish_audit"


class Conflict(Exception):
    """The object is not in a status this change starts from (the API answers 409)."""


class QuotaExceeded(Exception):
    """The user already has as much work queued or running as they may (the API answers 429)."""


class Refused(Exception):
    """Input this change cannot act on, blamed on one of its fields: the API answers 400
    ``{field: [message]}``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def no_table(run: SearchRun, then: str) -> str:
    """Why work that needs ``run``'s accuracy table cannot start yet; ``then``: what would."""
    return f"run {run.pk} has no accuracy table yet (status {run.status}); {then}"


def require_table(run: SearchRun, then: str) -> None:
    """Refuse (409) work on ``run`` that needs its accuracy table before it has one."""
    if not run.has_table:
        raise Conflict(no_table(run, then))


def check_quota(owner, active, limit: int, what: tuple[str, str]) -> None:
    """Refuse more work of ``owner`` when ``active`` (their queued or running runs or builds)
    already counts ``limit`` (``what``: how to name one and several). Called inside the transaction that queues the work: the owner's
    row is locked first, so two requests at once cannot both pass."""
    get_user_model().objects.select_for_update().filter(pk=owner.pk).first()
    count = active.count()
    if count >= limit:
        raise QuotaExceeded(
            f"you have {count} {what[count != 1]}, the most this server allows one user ({limit}); "
            "wait for one to finish or cancel one"
        )


def check_requested_quota(user, model, limit: int, what: tuple[str, str]) -> None:
    """:func:`check_quota` of the ``model`` rows (builds, profiles, audits) ``user`` asked
    for that are queued or running."""
    check_quota(user, model.objects.filter(requested_by=user, status__in=ACTIVE), limit, what)


RUNS = ("run queued or running", "runs queued or running")
BUILDS = ("deployment building", "deployments building")
PROFILES = ("device profile being measured", "device profiles being measured")
AUDITS = ("audit queued or running", "audits queued or running")


def check_run_quota(owner) -> None:
    active = SearchRun.objects.filter(owner=owner, status__in=ACTIVE)
    check_quota(owner, active, settings.PONAS_MAX_ACTIVE_RUNS, RUNS)


def send_on_commit(task: str, args: tuple, queue: str) -> None:
    """Send ``task`` to ``queue`` once the current transaction commits (at once outside one):
    a worker never sees a row that is not there yet, and a rolled-back change sends nothing."""
    transaction.on_commit(partial(app.send_task, task, args, queue=queue))


def send_search(run_id: int, attempt: int, queue: str) -> None:
    """Queue a run's ``run_search`` for this attempt (stage 1, then stage 2 where it was)."""
    send_on_commit(RUN_SEARCH, (run_id, attempt), queue)


def send_build(deployment_id: int, queue: str) -> None:
    """Queue a deployment's build."""
    send_on_commit(BUILD_DEPLOYMENT, (deployment_id,), queue)


def send_profile(profile_id: int, queue: str) -> None:
    """Queue a device profile's timing."""
    send_on_commit(PROFILE_LATENCY, (profile_id,), queue)


# ---- runs -----------------------------------------------------------------------------------


@transaction.atomic
def create_run(owner, **fields: Any) -> SearchRun:
    """Store a validated run (name, preset, config, queue, team) and queue its search, within
    the owner's quota of active runs."""
    check_run_quota(owner)
    run = SearchRun.objects.create(owner=owner, **fields)
    send_search(run.pk, run.attempt, run.queue)
    return run


def cancel_run(run: SearchRun) -> SearchRun:
    """Stop a queued or running search: a queued one is cancelled at once, a running one by
    its worker at the next step (its checkpoints are kept), or at once when no live worker
    works on it (it waits between tasks, or its worker is gone: its queued tasks then do
    nothing)."""
    runs = SearchRun.objects.filter(pk=run.pk)
    if not runs.filter(status=Status.QUEUED).update(
        status=Status.CANCELLED, cancel_requested=True, finished=timezone.now()
    ) and not runs.filter(status=Status.RUNNING).update(cancel_requested=True):
        run.refresh_from_db()
        raise Conflict(
            f"run {run.pk} is {run.status}; only queued or running runs can be cancelled"
        )
    run.refresh_from_db()
    now = timezone.now()
    if run.status == Status.RUNNING and not any(
        holder_alive(lease, now) for lease in run.leases.filter(attempt=run.attempt)
    ):
        # (a task that takes a lease meanwhile reads the cancel at its first poll)
        runs.filter(status=Status.RUNNING, attempt=run.attempt).update(
            status=Status.CANCELLED, finished=now
        )
        run.refresh_from_db()
    return run


@transaction.atomic
def resume_run(run: SearchRun) -> SearchRun:
    """Queue a failed or cancelled search again as a new attempt (tasks of the earlier one
    still in a queue then do nothing); it continues from its last checkpoint and gets its
    automatic resumes back (within the owner's quota of active runs)."""
    if run.status in (Status.FAILED, Status.CANCELLED):
        check_run_quota(run.owner)
    updated = SearchRun.objects.filter(
        pk=run.pk, status__in=[Status.FAILED, Status.CANCELLED]
    ).update(
        status=Status.QUEUED,
        error="",
        cancel_requested=False,
        finished=None,
        attempt=run.attempt + 1,
        auto_resumes=0,
    )
    run.refresh_from_db()
    if not updated:
        raise Conflict(
            f"run {run.pk} is {run.status}; only failed or cancelled runs can be resumed"
        )
    send_search(run.pk, run.attempt, run.queue)
    return run


@transaction.atomic
def delete_run(run: SearchRun) -> None:
    """Delete a finished run, its records and (once that commits) its files; not while a
    deployment of it builds (the build reads the run's supernet and writes under its folder).
    The run's row is locked first, so a deployment started at the same moment waits and then
    finds no run."""
    run = SearchRun.objects.select_for_update().filter(pk=run.pk).first() or run
    if run.is_active:
        raise Conflict(f"run {run.pk} is {run.status}: cancel it before deleting it")
    building = run.deployments.filter(status__in=ACTIVE).order_by("pk").first()
    if building is not None:
        raise Conflict(
            f"run {run.pk} has a deployment building (deployment {building.pk}, "
            f"{building.status}); delete the run once it has finished"
        )
    redrawing = run.redraws.filter(status__in=ACTIVE).order_by("pk").first()
    if redrawing is not None:
        raise Conflict(
            f"run {run.pk} has a redraw {redrawing.status} (run {redrawing.pk}, stage 2 again on "
            "its supernet); cancel it or delete this run once it has finished"
        )
    auditing = run.audits.filter(status__in=ACTIVE).order_by("pk").first()
    if auditing is not None:
        raise Conflict(
            f"run {run.pk} has an audit {auditing.status} (audit {auditing.pk}); cancel it "
            "or delete the run once it has finished"
        )
    # a worker may still write under the run's folder after its status changed (a cancel it
    # has not seen yet, a run failed by the watchdog while its worker lives on): not while a
    # live lease of it is held, or the folder would be removed mid-write
    now = timezone.now()
    held = Lease.objects.filter(run=run, task_id__gt="").order_by("key")
    working = next((lease for lease in held if holder_alive(lease, now)), None)
    if working is not None:
        raise Conflict(
            f'run {run.pk} is still being written by a worker ("{working.key}"); delete it '
            "once that work has stopped"
        )
    out_dir = run.out_dir
    run.delete()
    transaction.on_commit(lambda: shutil.rmtree(out_dir, ignore_errors=True))


def stage2_seed_of(run: SearchRun) -> int | None:
    """The seed ``run``'s stage 2 drew from (its ``stage2_seed``, else its search seed), as
    its table records it; None without a table."""
    meta = run.table_meta or {}
    config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    seed = config.get("stage2_seed", -1)
    if isinstance(seed, int) and seed >= 0:
        return seed
    seed = config.get("seed", meta.get("seed"))  # (tables before stage2_seed: the search's)
    return seed if isinstance(seed, int) else None


def next_redraw_seed(run: SearchRun) -> int:
    """The smallest stage-2 seed that neither ``run`` nor a redraw of it has drawn from."""
    used = {stage2_seed_of(run)} | {
        (config or {}).get("stage2_seed") for config in run.redraws.values_list("config", flat=True)
    }
    return next(seed for seed in range(len(used) + 1) if seed not in used)


@transaction.atomic
def redraw_run(user, run: SearchRun, overrides: dict[str, Any]) -> SearchRun:
    """Queue stage 2 again on succeeded ``run``'s stage-1 supernet, with validated stage-2
    ``overrides`` (``stage2_seed`` among them) on top of its settings: a new run of ``user``
    (the run's owner or an admin of its team) whose ``source_run`` is ``run``, within their
    quota of active runs. Its worker starts from ``run``'s stage-1 checkpoint (no stage 1)
    and, once it succeeds, writes the entry noise between the two tables (``noise.json``).
    The run's row is locked (a delete at the same moment waits, or has already removed it)."""
    source = SearchRun.objects.select_for_update().filter(pk=run.pk).first()
    if source is None:
        raise Conflict(f"run {run.pk} was deleted")
    require_table(source, "run stage 2 again on a succeeded run")
    if not source.stage1_checkpoint.is_file():
        raise Conflict(
            f"run {source.pk} has no stage-1 checkpoint any more ({source.storage_prefix}/"
            "checkpoints/stage1.pt): stage 2 cannot run again on its supernet"
        )
    check_run_quota(user)
    seed = overrides["stage2_seed"]
    redraw = SearchRun.objects.create(
        owner=user,
        team=source.team,
        name=f"{source.name or source.preset} · stage 2 again (seed {seed})"[:200],
        preset=source.preset,
        config={**source.config, **overrides},
        queue=work_queue(user, source),
        source_run=source,
    )
    send_search(redraw.pk, redraw.attempt, redraw.queue)
    return redraw


# ---- deployments ----------------------------------------------------------------------------


def work_queue(user, run: SearchRun) -> str:
    """Where the heavy work ``user`` asks for on ``run`` (a build, a device profile) goes:
    the run's queue when ``user`` may send work there (staff: any; others: a
    ``PONAS_USER_QUEUES`` queue), else the first of those. A team member who is not staff
    never reaches ``default`` through a run a staff member queued there."""
    if user.is_staff or run.queue in settings.PONAS_USER_QUEUES:
        return run.queue
    if not settings.PONAS_USER_QUEUES:
        raise Conflict("this server lets no user send work to a queue (PONAS_USER_QUEUES)")
    return settings.PONAS_USER_QUEUES[0]


def check_profile(run: SearchRun, profile: DeviceProfile | None) -> None:
    """A profile given with a run must be one of that run's (:class:`Refused` otherwise)."""
    if profile is not None and profile.run_id != run.pk:
        raise Refused(
            "profile", f"device profile {profile.pk} is of run {profile.run_id}, not {run.pk}"
        )


def select(table: AccuracyTable, budgets: dict[str, float]) -> Selection:
    """The most accurate network of ``table`` within ``budgets`` (``ponas.solve``); a budget
    that cannot be met, or one on a cost the table lacks (latency), is :class:`Refused` on
    its ``max_`` field."""
    try:
        return solve(table, budgets)
    except Infeasible as exc:
        raise Refused(f"max_{exc.kind}", str(exc)) from None
    except ValueError as exc:  # a cost kind this table does not have (latency)
        kind = next((k for k in budgets if k not in table.cost), None)
        raise Refused(f"max_{kind}" if kind else "run", str(exc)) from None


def choose_network(
    run: SearchRun, profile: DeviceProfile | None, budgets: dict[str, float]
) -> Selection:
    """The network a deployment of ``run`` within ``budgets`` builds (latency: ``profile``'s,
    one of the run's): :class:`Refused` on ``run`` while it has no table, on ``profile`` for
    another run's, on a ``max_`` field for a budget nothing meets."""
    if not run.has_table:
        raise Refused("run", no_table(run, "deploy from a succeeded run"))
    check_profile(run, profile)
    return select(accuracy_table(run, profile), budgets)


@transaction.atomic
def start_deployment(user, **fields: Any) -> Deployment:
    """Store a validated deployment (run, budgets, the chosen network, formats) that ``user``
    (the run's owner or a member of its team) asked for and queue its build on the run's
    queue, within ``user``'s quota of builds. The run's row is locked (a delete at the same
    moment waits, or has already removed the run: 404)."""
    run = SearchRun.objects.select_for_update().filter(pk=fields["run"].pk).first()
    if run is None:
        raise Conflict(f"run {fields['run'].pk} was deleted")
    check_requested_quota(user, Deployment, settings.PONAS_MAX_ACTIVE_DEPLOYMENTS, BUILDS)
    queue = work_queue(user, run)
    deployment = Deployment.objects.create(requested_by=user, queue=queue, **fields)
    send_build(deployment.pk, deployment.queue)
    return deployment


# ---- device profiles ------------------------------------------------------------------------


@transaction.atomic
def start_profile(run: SearchRun, queue: str, user) -> DeviceProfile:
    """Queue the timing of a succeeded run's blocks on ``queue`` for ``user`` (the run's owner
    or a member of its team): the worker that takes it measures the lookup table on its own
    device and stores it, named by the device (within ``user``'s quota of profiles being
    measured)."""
    run = SearchRun.objects.select_for_update().filter(pk=run.pk).first() or run
    require_table(run, "profile the latency of a succeeded run")
    check_requested_quota(user, DeviceProfile, settings.PONAS_MAX_ACTIVE_PROFILES, PROFILES)
    profile = DeviceProfile.objects.create(run=run, queue=queue, requested_by=user)
    send_profile(profile.pk, queue)
    return profile


def cancel_profile(profile: DeviceProfile) -> DeviceProfile:
    """Stop a queued or running device profile at once: its worker (if one times it) stops
    at its next timed pass and stores nothing."""
    if not DeviceProfile.objects.filter(pk=profile.pk, status__in=ACTIVE).update(
        status=Status.CANCELLED, finished=timezone.now()
    ):
        profile.refresh_from_db()
        raise Conflict(
            f"profile {profile.pk} is {profile.status}; only queued or running profiles can be "
            "cancelled"
        )
    profile.refresh_from_db()
    return profile


# ---- audits ---------------------------------------------------------------------------------


def send_audit(audit_id: int, queue: str) -> None:
    """Queue an audit's trainings not done yet, one task each on the run's queue (``queue``);
    when all are done, its finishing task. A training already being done by a live worker
    (a re-send by the watchdog) finds its lease held and does nothing."""
    todo = list(
        AuditNetwork.objects.filter(audit_id=audit_id, accuracy__isnull=True).values_list(
            "pk", flat=True
        )
    )
    for network_id in todo:
        send_on_commit(TRAIN_AUDIT_NETWORK, (audit_id, network_id), queue)
    if not todo:
        send_on_commit(FINISH_AUDIT, (audit_id,), "default")


@transaction.atomic
def start_audit(run: SearchRun, user, plan, **fields: Any) -> Audit:
    """Store a validated audit of a succeeded run (budgets, networks, epochs, seeds, the drawn
    ``plan`` and its estimate) that ``user`` (the run's owner or a member of its team) asked
    for, with one row per training, and queue the trainings on the run's queue, within
    ``user``'s quota of audits. The run's row is locked (a delete at the same moment waits)."""
    locked = SearchRun.objects.select_for_update().filter(pk=run.pk).first()
    if locked is None:
        raise Conflict(f"run {run.pk} was deleted")
    require_table(locked, "audit a succeeded run")
    check_requested_quota(user, Audit, settings.PONAS_MAX_ACTIVE_AUDITS, AUDITS)
    audit = Audit.objects.create(
        run=locked, requested_by=user, pools=plan.pools, total=len(plan.trainings), **fields
    )
    AuditNetwork.objects.bulk_create(
        AuditNetwork(audit=audit, key=key, choices=names, seed=seed)
        for key, names, seed in plan.trainings
    )
    send_audit(audit.pk, locked.queue)
    return audit


def cancel_audit(audit: Audit) -> Audit:
    """Stop a queued or running audit at once: trainings not started do nothing, a training
    under way stops at its next step (what was trained is kept on the audit)."""
    if not Audit.objects.filter(pk=audit.pk, status__in=ACTIVE).update(
        status=Status.CANCELLED, finished=timezone.now()
    ):
        audit.refresh_from_db()
        raise Conflict(
            f"audit {audit.pk} is {audit.status}; only queued or running audits can be cancelled"
        )
    audit.refresh_from_db()
    return audit
