"""Dashboard pages. Views stay thin: they read the runs app's models (always scoped to what the
signed-in user sees: their runs and their teams', ``access.py``), render templates, and create runs the way the API does. Live updates, the
charts and the deploy panel are page JavaScript that calls the REST API."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Avg, Count, Max, Min, Q
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods
from knox.models import AuthToken

from ponas import noise
from webapp.pages.forms import SearchForm, preset_info
from webapp.pages.markdown import render_markdown
from webapp.runs import access, services, workers
from webapp.runs.models import (
    FORMATS,
    Artifact,
    Deployment,
    Queue,
    SearchRun,
    Stage,
    Status,
    TableEntry,
)
from webapp.runs.serializers import (
    DeploymentSerializer,
    SearchRunDetailSerializer,
    SearchRunSerializer,
    shown_task,
)
from webapp.runs.serializers.runs import RedrawSerializer
from webapp.runs.tables import accuracy_table, fidelity
from webapp.runs.tracking import event_files

PAGE_SIZE = 20


def _page(request, queryset):
    return Paginator(queryset, PAGE_SIZE).get_page(request.GET.get("page"))


@login_required
def runs_list(request):
    runs = access.visible_runs(request.user).select_related("owner", "team")
    counts = dict(runs.values_list("status").annotate(n=Count("id")).order_by())
    status = request.GET.get("status", "")
    if status not in Status.values:
        status = ""
    page = _page(request, runs.filter(status=status) if status else runs)
    tabs = [("", "All", sum(counts.values()))] + [
        (value, label.capitalize(), counts.get(value, 0)) for value, label in Status.choices
    ]
    return render(
        request,
        "pages/runs_list.html",
        {
            "page": page,
            "status": status,
            "tabs": tabs,
            "page_size": PAGE_SIZE,
            "any_active": any(run.is_active for run in page),
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def run_new(request):
    if request.method == "POST":
        form = SearchForm(request.POST, user=request.user)
        if form.is_valid():
            run = _create_run(request, form)
            if run is not None:
                return redirect("pages:run", pk=run.pk)
    else:
        form = SearchForm(preset=request.GET.get("preset", "digits"), user=request.user)
    return render(request, "pages/run_new.html", {"form": form, "presets": preset_info()})


def _create_run(request, form: SearchForm) -> SearchRun | None:
    """Create and queue the run through the API's serializer and service, so a run started
    here is the same as one started with ``POST /api/runs/``."""
    data = form.cleaned_data
    serializer = SearchRunSerializer(
        data={
            "name": data["name"],
            "preset": data["preset"],
            "config": form.overrides(),
            "queue": data["queue"] or Queue.GPU,
            "team": data.get("team") or None,
        },
        context={"request": request},
    )
    if not serializer.is_valid():
        for field, messages in serializer.errors.items():
            for message in messages:
                if field == "config":
                    form.add_config_error(str(message))
                else:
                    form.add_error(field if field in form.fields else None, str(message))
        return None
    try:
        return services.create_run(request.user, **serializer.validated_data)
    except services.QuotaExceeded as exc:
        form.add_error(None, str(exc))
        return None


def _timeline(run: SearchRun) -> list[dict[str, Any]]:
    """The stages of a run with their state (done, current, pending, failed or cancelled), when
    each started and, once done, when it ended."""
    order = [Stage.QUEUED, Stage.STAGE1, Stage.STAGE2, Stage.DONE]
    labels = {
        Stage.QUEUED: "Queued",
        Stage.STAGE1: "Stage 1 · meta-training",
        Stage.STAGE2: "Stage 2 · accuracy table",
        Stage.DONE: "Done",
    }
    at = order.index(run.stage) if run.stage in order else 0
    steps = []
    for i, stage in enumerate(order):
        if i < at or run.status == Status.SUCCEEDED:
            state = "done"
        elif i == at:
            state = {
                Status.FAILED: "failed",
                Status.CANCELLED: "cancelled",
                Status.QUEUED: "current" if stage == Stage.QUEUED else "waiting",
            }.get(run.status, "current")
        else:
            state = "pending"
        steps.append({"key": stage.value, "label": labels[stage], "state": state})
    # each step's start; a finished step also ends when the next one starts
    done = run.finished if run.status == Status.SUCCEEDED else None
    starts = [run.created, run.started, run.stage2_started, done]
    for step, start, end in zip(steps, starts, [*starts[1:], None], strict=True):
        step["time"], step["end"] = start, end if step["state"] == "done" else None
    return steps


def _stage2_rows(run: SearchRun) -> list[dict[str, Any]]:
    """Per layer: how many candidates are scored, of how many, and their best/mean/worst."""
    if not run.space:
        return []
    from ponas.space import SearchSpace

    space = SearchSpace.from_dict(run.space)
    scored = {
        row["layer"]: row
        for row in TableEntry.objects.filter(run=run)
        .values("layer")
        .annotate(n=Count("id"), best=Max("accuracy"), mean=Avg("accuracy"), worst=Min("accuracy"))
        .order_by()
    }
    rows = []
    for i, layer in enumerate(space.layers):
        row = scored.get(i, {})
        rows.append(
            {
                "layer": i + 1,
                "channels": layer.out_channels,
                "stride": layer.stride,
                "total": len(space.allowed_candidates(i)),
                "scored": row.get("n", 0),
                "best": row.get("best"),
                "mean": row.get("mean"),
                "worst": row.get("worst"),
                "chosen": run.path[i] if i < len(run.path) else None,
            }
        )
    return rows


def _entry_noise(run: SearchRun) -> dict[str, Any] | None:
    """A succeeded redraw's entry noise against its source (its ``noise.json``), for the run
    page's card: per layer noise, spread and their ratio, how many rows are within the
    budget, the self-agreement; None for other runs."""
    doc = noise.load(run.noise_file) if run.status == Status.SUCCEEDED else None
    if doc is None:
        return None
    layers = doc["layers"]
    return {
        "budget": doc["budget"],
        "seeds": doc["stage2_seeds"],
        "layers": [{**x, "layer": x["layer"] + 1} for x in layers],
        "within": noise.within(doc),
        "agreement": [g for g in doc["agreement"] if g["tau"] is not None],
    }


def _redraws(request, run: SearchRun) -> dict[str, Any]:
    """The source side of redraws for the run page: the redraws of ``run`` the user sees, and
    whether (and with which default seed) they may start one."""
    can = run.has_table and access.can_manage(request.user, run) and run.stage1_checkpoint.is_file()
    return {
        "redraws": access.visible_runs(request.user).filter(source_run=run).order_by("pk"),
        "can_redraw": can,
        "redraw_seed": services.next_redraw_seed(run) if can else None,
    }


@login_required
@require_http_methods(["POST"])
def run_redraw(request, pk: int):
    """Stage 2 again on the run's supernet with another seed, as ``POST
    /api/runs/{id}/redraw/`` does (its serializer and service): the new run's page, or back
    to this one with why not."""
    run = get_object_or_404(access.visible_runs(request.user), pk=pk)
    if not access.can_manage(request.user, run):
        messages.error(request, "only the run's owner or an admin of its team may do that")
        return redirect("pages:run", pk=run.pk)
    data = {k: v for k, v in request.POST.items() if k == "stage2_seed" and v.strip()}
    query = RedrawSerializer(data=data, context={"request": request, "run": run})
    if not query.is_valid():
        for problems in query.errors.values():
            for problem in problems:
                messages.error(request, str(problem))
        return redirect("pages:run", pk=run.pk)
    try:
        redraw = services.redraw_run(request.user, run, query.validated_data)
    except (services.Conflict, services.QuotaExceeded) as exc:
        messages.error(request, str(exc))
        return redirect("pages:run", pk=run.pk)
    return redirect("pages:run", pk=redraw.pk)


@login_required
def run_detail(request, pk: int):
    run = get_object_or_404(access.visible_runs(request.user).select_related("team"), pk=pk)
    data = SearchRunDetailSerializer(run).data
    stage2 = _stage2_rows(run)
    deployments = run.deployments.all()[:50]
    return render(
        request,
        "pages/run_detail.html",
        {
            "run": run,
            "run_data": data,
            "can_manage": access.can_manage(request.user, run),
            "waiting": data["waiting"],
            "timeline": _timeline(run),
            "stage2": stage2,
            "stage2_scored": sum(r["scored"] for r in stage2),
            "stage2_total": sum(r["total"] for r in stage2),
            # what an entry is and how certain: suffixes, images, standard errors, close calls
            "fidelity": fidelity(run) if run.has_table else None,
            "entry_noise": _entry_noise(run),
            **_redraws(request, run),
            "deployments": deployments,
            "has_events": bool(event_files(run)),
            "formats": FORMATS,
            "profile_queues": [
                q for q in Queue.values if request.user.is_staff or q in settings.PONAS_USER_QUEUES
            ],
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def tokens(request):
    """The user's API tokens (their first characters, when made, when they expire), with a
    button that revokes one, or all."""
    owned = AuthToken.objects.filter(user=request.user)
    if request.method == "POST":
        which = request.POST.get("revoke", "")
        revoked, _ = (owned if which == "all" else owned.filter(digest=which)).delete()
        messages.success(request, f"{revoked} token{'s' * (revoked != 1)} revoked")
        return redirect("pages:tokens")
    current = owned.filter(Q(expiry__isnull=True) | Q(expiry__gt=timezone.now()))
    return render(request, "pages/tokens.html", {"tokens": current.order_by("-created")})


@login_required
def workers_list(request):
    """The live workers (and the queues with none), from the worker registry."""
    live = list(workers.live_workers())
    for worker in live:  # its arguments name other users' runs: staff only
        worker.shown_task = shown_task(worker.current_task, request.user)
    consumed = {q for w in live for q in w.queues or []}
    idle_queues = [
        {"name": q, "start_command": workers.start_command(q)}
        for q in Queue.values
        if q not in consumed
    ]
    return render(request, "pages/workers.html", {"workers": live, "idle_queues": idle_queues})


@login_required
def deployments_list(request):
    deployments = access.visible_deployments(request.user).select_related("run", "run__team")
    return render(request, "pages/deployments_list.html", {"page": _page(request, deployments)})


def _architecture(deployment: Deployment) -> list[dict[str, Any]]:
    """The chosen blocks with their table accuracy and costs; ``t`` places the accuracy on the
    run's heatmap colour scale (0 = the table's lowest, 1 = its highest)."""
    run = deployment.run
    if not run.has_table:
        return [{"layer": i + 1, "name": c} for i, c in enumerate(deployment.choices)]
    table = accuracy_table(run)
    values = [a for row in table.accuracy for a in row if a is not None]
    low, high = min(values), max(values)
    blocks = []
    for i, name in enumerate(deployment.choices):
        j = table.candidates.index(name)
        acc = table.accuracy[i][j]
        blocks.append(
            {
                "layer": i + 1,
                "name": name,
                "accuracy": acc,
                "t": (acc - low) / (high - low) if high > low else 1.0,
                "macs": table.cost["macs"][i][j],
                "params": table.cost["params"][i][j],
            }
        )
    return blocks


@login_required
def deployment_detail(request, pk: int):
    deployment = get_object_or_404(
        access.visible_deployments(request.user).select_related("run"), pk=pk
    )
    card = deployment.artifacts.filter(kind=Artifact.Kind.MODEL_CARD).first()
    card_html = ""
    if card is not None:
        try:
            with card.open() as f:
                card_html = render_markdown(f.read().decode("utf-8", errors="replace"))
        except OSError:
            card_html = ""
    files = {a.kind: a for a in deployment.artifacts.filter(kind__in=FORMATS)}
    data = DeploymentSerializer(deployment, context={"request": request}).data
    return render(
        request,
        "pages/deployment_detail.html",
        {
            "deployment": deployment,
            "run": deployment.run,
            "deployment_data": data,
            "architecture": _architecture(deployment),
            "card_html": card_html,
            "downloads": [(fmt, files.get(fmt)) for fmt in deployment.formats],
        },
    )
