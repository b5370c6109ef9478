"""The REST API (DESIGN.md "REST API"): runs, their tables, budget previews, Pareto frontiers,
deployments and their downloads. Views stay thin: serializers validate, ``services`` changes
state (and sends the workers their tasks), ``ponas`` answers the questions. Every query is
scoped to what the requesting user sees (their runs and their teams', ``access.py``); a
team member who may not manage a run gets 403, anyone else 404. Reads change nothing."""

from __future__ import annotations

import django_filters.rest_framework as filters
from django.http import FileResponse, HttpResponse, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, NotFound
from rest_framework.response import Response
from rest_framework.serializers import Serializer

from ponas.files import FILENAMES
from ponas.solve import Infeasible, pareto_frontier, solve
from ponas.table import AccuracyTable
from webapp.api import ERROR, OwnedObjectMixin, choices_message, error
from webapp.runs import access, services, workers
from webapp.runs import serializers as s
from webapp.runs.models import FORMATS, Audit, Deployment, DeviceProfile, SearchRun, Status
from webapp.runs.tables import accuracy_table
from webapp.runs.tracking import events_archive

# ---- runs -----------------------------------------------------------------------------------


class RunFilter(filters.FilterSet):
    status = filters.ChoiceFilter(
        choices=Status.choices,
        error_messages={"invalid_choice": choices_message("status", Status.values)},
    )
    preset = filters.CharFilter()
    team = filters.CharFilter(field_name="team__name", help_text="only the runs of this team")

    class Meta:
        model = SearchRun
        fields = ["status", "preset", "team"]


class NoTable(APIException):
    """409: the run has no accuracy table (yet)."""

    status_code = status.HTTP_409_CONFLICT

    def __init__(self, run: SearchRun) -> None:
        super().__init__(
            f"run {run.pk} has no accuracy table yet (status {run.status}); it is ready once "
            "the run has succeeded"
        )


# A list answers 400 for a bad filter value and 404 for a page past the end.
LIST_ERRORS = {400: OpenApiTypes.OBJECT, 404: ERROR}


@extend_schema_view(
    list=extend_schema(responses={200: s.SearchRunSerializer(many=True), **LIST_ERRORS}),
    create=extend_schema(
        responses={201: s.SearchRunSerializer, 400: OpenApiTypes.OBJECT, 429: ERROR}
    ),
    retrieve=extend_schema(
        parameters=[s.MetricsQuerySerializer],
        responses={200: s.SearchRunDetailSerializer, 400: OpenApiTypes.OBJECT, 404: ERROR},
    ),
    destroy=extend_schema(responses={204: None, 403: ERROR, 404: ERROR, 409: ERROR}),
)
class RunViewSet(
    OwnedObjectMixin,
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Searches: one run per dataset and search space produces an accuracy table."""

    noun = "run"
    filterset_class = RunFilter

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user
            return SearchRun.objects.none()
        return access.visible_runs(self.request.user).select_related("owner", "team")

    def get_serializer_class(self):
        return s.SearchRunDetailSerializer if self.action == "retrieve" else s.SearchRunSerializer

    def get_serializer_context(self):
        context = super().get_serializer_context()
        if self.action == "retrieve":  # ?since=: only the metric points stored after it
            query = s.MetricsQuerySerializer(data=self.request.query_params)
            query.is_valid(raise_exception=True)
            context["since"] = query.validated_data.get("since")
        return context

    def perform_create(self, serializer) -> None:
        serializer.instance = services.create_run(self.request.user, **serializer.validated_data)

    def perform_destroy(self, run: SearchRun) -> None:
        access.require_manage(self.request.user, run, "delete")
        services.delete_run(run)

    def managed_run(self, verb: str) -> SearchRun:
        """The URL's run (404 unless the user sees it), if they may ``verb`` it (403)."""
        run = self.get_object()
        access.require_manage(self.request.user, run, verb)
        return run

    def stored_table(self, query_class) -> tuple[Serializer, SearchRun, AccuracyTable]:
        """The URL's query (validated by ``query_class``: 400), its run (404) and the run's
        accuracy table (409 if it has none yet), with the latency of ``?profile=`` if given."""
        query = query_class(data=self.request.query_params, context={"request": self.request})
        query.is_valid(raise_exception=True)
        run = self.get_object()
        if not run.has_table:
            raise NoTable(run)
        profile = query.validated_data.get("profile")
        s.check_profile(run, profile)
        return query, run, accuracy_table(run, profile)

    @extend_schema(
        request=None, responses={202: s.SearchRunSerializer, 403: ERROR, 404: ERROR, 409: ERROR}
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Stop a queued or running search at the next step; its checkpoints are kept (the
        owner or an admin of the run's team)."""
        run = services.cancel_run(self.managed_run("cancel"))
        return Response(s.SearchRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        request=None,
        responses={202: s.SearchRunSerializer, 403: ERROR, 404: ERROR, 409: ERROR, 429: ERROR},
    )
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        """Queue a failed or cancelled search again; it continues from its last checkpoint
        (the owner or an admin of the run's team)."""
        run = services.resume_run(self.managed_run("resume"))
        return Response(s.SearchRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        parameters=[s.TableQuerySerializer],
        responses={
            (200, "application/json"): OpenApiTypes.OBJECT,
            (200, "text/csv"): OpenApiTypes.STR,
            400: OpenApiTypes.OBJECT,
            404: ERROR,
            409: ERROR,
        },
    )
    @action(detail=True, methods=["get"])
    def table(self, request, pk=None):
        """The accuracy table (``ponas-table/1`` JSON, or CSV with ``?format=csv``)."""
        query, run, table = self.stored_table(s.TableQuerySerializer)
        if query.validated_data["format"] == "csv":
            return HttpResponse(
                table.to_csv(),
                content_type="text/csv; charset=utf-8",
                headers={"Content-Disposition": f'attachment; filename="run-{run.pk}-table.csv"'},
            )
        return Response(table.to_dict())

    @extend_schema(
        responses={(200, "application/zip"): OpenApiTypes.BINARY, 404: ERROR},
    )
    @action(detail=True, methods=["get"])
    def tensorboard(self, request, pk=None):
        """The run's TensorBoard event files (stage-1 loss, accuracy, learning rate, images/s;
        each table row as it closed; its deployments' accuracy) as a zip: unpack it and run
        ``tensorboard --logdir`` on the folder. Available while the run runs, too, to
        whoever sees the run (its owner and the members of its team); the zip is made as it
        is sent."""
        run = self.get_object()
        archive = events_archive(run)
        if archive is None:
            return error(
                f"run {run.pk} has no TensorBoard events yet; its workers write them from the "
                "first stage-1 steps",
                status.HTTP_404_NOT_FOUND,
            )
        return StreamingHttpResponse(
            archive,
            content_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="run-{run.pk}-tensorboard.zip"'},
        )

    @extend_schema(
        request=s.PlanSerializer, responses={200: OpenApiTypes.OBJECT, 400: OpenApiTypes.OBJECT}
    )
    @action(detail=False, methods=["post"])
    def plan(self, request):
        """What a search with these settings would cost, before it runs (creates nothing):
        per stage the steps, images decoded, peak host and device memory; GPU-hours given
        ``images_per_s``."""
        query = s.PlanSerializer(data=request.data, context=self.get_serializer_context())
        query.is_valid(raise_exception=True)
        return Response(query.plan())

    @extend_schema(
        parameters=[s.BudgetQuerySerializer],
        responses={200: s.SelectionSerializer, 400: OpenApiTypes.OBJECT, 404: ERROR, 409: ERROR},
    )
    @action(detail=True, methods=["get"])
    def preview(self, request, pk=None):
        """The most accurate network within the budgets, from the stored table (no worker)."""
        query, run, table = self.stored_table(s.BudgetQuerySerializer)
        budgets = query.budgets()
        try:
            selection = solve(table, budgets)
        except Infeasible as exc:
            return Response({f"max_{exc.kind}": [str(exc)]}, status=status.HTTP_400_BAD_REQUEST)
        except ValueError as exc:  # a budget on a cost this table lacks (latency)
            kind = next(k for k in budgets if k not in table.cost)
            return Response({f"max_{kind}": [str(exc)]}, status=status.HTTP_400_BAD_REQUEST)
        return Response(selection.to_dict())

    @extend_schema(
        methods=["get"],
        responses={
            200: s.DeviceProfileSerializer(many=True),
            400: OpenApiTypes.OBJECT,
            404: ERROR,
        },
    )
    @extend_schema(
        methods=["post"],
        request=s.DeviceProfileSerializer,
        responses={
            202: s.DeviceProfileSerializer,
            400: OpenApiTypes.OBJECT,
            404: ERROR,
            409: ERROR,
            429: ERROR,
        },
    )
    @action(
        detail=True,
        methods=["get", "post"],
        serializer_class=s.DeviceProfileSerializer,
        pagination_class=None,  # a run has a handful of profiles: a plain list
    )
    def profiles(self, request, pk=None):
        """Device latency profiles of the run. POST ``{"queue"}`` sends the timing to a queue:
        the worker that takes it measures every block on its own device (its GPU, else its
        CPU) and stores the table, named by the device; then ``?profile=ID`` on ``preview``,
        ``pareto`` and ``table`` (and ``profile`` on a deployment) budgets in its latency."""
        run = self.get_object()
        if request.method == "GET":
            profiles = DeviceProfile.objects.filter(run=run).select_related("requested_by")
            return Response(s.DeviceProfileSerializer(profiles, many=True).data)
        serializer = s.DeviceProfileSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        # no queue given: the run's, if this user may send work there (services.work_queue)
        queue = serializer.validated_data.get("queue") or services.work_queue(request.user, run)
        profile = services.start_profile(run, queue, request.user)
        return Response(s.DeviceProfileSerializer(profile).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        request=None,
        responses={202: s.DeviceProfileSerializer, 403: ERROR, 404: ERROR, 409: ERROR},
    )
    @action(detail=True, methods=["post"], url_path=r"profiles/(?P<profile_id>[0-9]{1,18})/cancel")
    def cancel_profile(self, request, pk=None, profile_id=None):
        """Stop a queued or running device profile at once (who asked for it, the run's owner
        or an admin of its team): it frees its place in the quota; nothing is stored."""
        run = self.get_object()
        profile = DeviceProfile.objects.filter(run=run, pk=int(profile_id)).first()
        if profile is None:
            raise NotFound(f"run {run.pk} has no profile {profile_id}")
        if profile.requested_by_id != request.user.pk:
            access.require_manage(request.user, run, "cancel profiles of")
        profile = services.cancel_profile(profile)
        return Response(s.DeviceProfileSerializer(profile).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        parameters=[s.ParetoQuerySerializer],
        responses={200: OpenApiTypes.OBJECT, 400: OpenApiTypes.OBJECT, 404: ERROR, 409: ERROR},
    )
    @action(detail=True, methods=["get"])
    def pareto(self, request, pk=None):
        """Every network not beaten in both score and the chosen cost, cheapest first."""
        query, run, table = self.stored_table(s.ParetoQuerySerializer)
        kind = query.validated_data["cost"]
        if kind not in table.cost:
            return Response(
                {
                    "cost": [
                        f"run {run.pk}'s table has no {kind} costs; it has {', '.join(table.cost_kinds)}"
                    ]
                },
                status=status.HTTP_400_BAD_REQUEST,
            )
        points = [sel.to_dict() for sel in pareto_frontier(table, kind)]
        return Response({"cost": kind, "points": points})


# ---- deployments ----------------------------------------------------------------------------


def seen_runs(request):
    """The runs a ``?run=`` filter may name: those the user sees (any other run is as
    unknown as a missing one, so the filter does not tell which ids exist)."""
    if request is None:
        return SearchRun.objects.none()
    return access.visible_runs(request.user)


class DeploymentFilter(filters.FilterSet):
    status = filters.ChoiceFilter(
        choices=Status.choices,
        error_messages={"invalid_choice": choices_message("status", Status.values)},
    )
    run = filters.ModelChoiceFilter(
        queryset=seen_runs,
        error_messages={"invalid_choice": "run %(value)s not found"},
    )

    class Meta:
        model = Deployment
        fields = ["status", "run"]


# No registered media type exists for PyTorch or ONNX files: binary, with a telling file name.
CONTENT_TYPE = "application/octet-stream"
SUFFIXES = {fmt: name.removeprefix("model") for fmt, name in FILENAMES.items()}


@extend_schema_view(
    list=extend_schema(responses={200: s.DeploymentSerializer(many=True), **LIST_ERRORS}),
    create=extend_schema(
        responses={201: s.DeploymentSerializer, 400: OpenApiTypes.OBJECT, 429: ERROR}
    ),
    retrieve=extend_schema(responses={200: s.DeploymentSerializer, 404: ERROR}),
)
class DeploymentViewSet(
    OwnedObjectMixin,
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Networks specialized for budgets from a run's table, built and exported by a worker."""

    noun = "deployment"
    serializer_class = s.DeploymentSerializer
    filterset_class = DeploymentFilter

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Deployment.objects.none()
        return access.visible_deployments(self.request.user).select_related("requested_by")

    def perform_create(self, serializer) -> None:
        serializer.instance = services.start_deployment(
            self.request.user, **serializer.validated_data
        )

    @extend_schema(
        parameters=[OpenApiParameter("fmt", str, "path", enum=list(FORMATS))],
        responses={
            (200, "application/octet-stream"): OpenApiTypes.BINARY,
            404: ERROR,
            409: ERROR,
        },
    )
    @action(detail=True, methods=["get"], url_path=r"download/(?P<fmt>[^/.]+)")
    def download(self, request, pk=None, fmt=None):
        """The exported network: ``pt`` (checkpoint bundle), ``pt2`` (torch.export program),
        ``onnx`` or ``torchscript`` (legacy)."""
        deployment = self.get_object()
        if fmt not in FORMATS:
            return error(
                f'unknown format "{fmt}"; allowed: {", ".join(FORMATS)}', status.HTTP_404_NOT_FOUND
            )
        if deployment.status != Status.SUCCEEDED:
            return error(
                f"deployment {deployment.pk} is {deployment.status}; its files are ready once "
                "it has succeeded",
                status.HTTP_409_CONFLICT,
            )
        artifact = deployment.artifacts.filter(kind=fmt).first()
        if artifact is None:
            return error(
                f"deployment {deployment.pk} was not exported as {fmt} "
                f"(formats: {', '.join(deployment.formats)})",
                status.HTTP_404_NOT_FOUND,
            )
        name = f"ponas-deployment-{deployment.pk}{SUFFIXES[fmt]}"
        try:
            file = artifact.open()  # never outside the artifact store
        except OSError:
            return error(
                f"deployment {deployment.pk}'s {fmt} file is missing", status.HTTP_404_NOT_FOUND
            )
        return FileResponse(
            file,
            as_attachment=True,
            filename=name,
            content_type=CONTENT_TYPE,
        )


# ---- workers --------------------------------------------------------------------------------


@extend_schema_view(list=extend_schema(responses={200: s.WorkerSerializer(many=True), 404: ERROR}))
class WorkerViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """Live workers: name, the queues they consume, device, torch version, the task each
    runs and when it was last seen (from the worker registry, written by the workers)."""

    serializer_class = s.WorkerSerializer

    def get_queryset(self):
        return workers.live_workers()


# ---- audits ---------------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(responses={200: s.AuditSerializer(many=True), **LIST_ERRORS}),
    create=extend_schema(
        responses={
            202: s.AuditSerializer,
            400: OpenApiTypes.OBJECT,
            404: ERROR,
            409: ERROR,
            429: ERROR,
        }
    ),
    retrieve=extend_schema(responses={200: s.AuditSerializer, 404: ERROR}),
)
class AuditViewSet(
    OwnedObjectMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Audits of a run's table on its own data (``runs/{run}/audits/``): per MACs budget,
    cost-matched networks trained from scratch by the workers (one task per training) and
    scored on the test split; the report ranks the table's scores and MACs alone against
    that truth. Whoever sees the run sees and starts its audits."""

    noun = "audit"
    serializer_class = s.AuditSerializer

    def run(self) -> SearchRun:
        """The URL's run, if the user sees it (404 otherwise, as for a missing one)."""
        if not hasattr(self, "_run"):
            pk = self.kwargs["run_pk"]
            self._run = access.visible_runs(self.request.user).filter(pk=pk).first()
            if self._run is None:
                raise NotFound(f"run {pk} not found")
        return self._run

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Audit.objects.none()
        audits = access.visible_audits(self.request.user).filter(run=self.run())
        return audits.select_related("requested_by", "run")

    def get_serializer_context(self):
        context = super().get_serializer_context()
        if not getattr(self, "swagger_fake_view", False) and "run_pk" in self.kwargs:
            context["run"] = self.run()
        return context

    def _validated(self, request) -> s.AuditSerializer:
        run = self.run()
        if not run.has_table:
            raise services.Conflict(
                f"run {run.pk} has no accuracy table yet (status {run.status}); audit a "
                "succeeded run"
            )
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return serializer

    def create(self, request, run_pk=None):
        """Start an audit of the run's table: the answer carries its cost ``estimate``."""
        data = dict(self._validated(request).validated_data)
        plan = data.pop("plan")
        audit = services.start_audit(self.run(), request.user, plan, **data)
        return Response(s.AuditSerializer(audit).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        request=s.AuditSerializer,
        responses={200: OpenApiTypes.OBJECT, 400: OpenApiTypes.OBJECT, 404: ERROR, 409: ERROR},
    )
    def estimate(self, request, run_pk=None):
        """What an audit with these fields would train and cost, before it starts (creates
        nothing): trainings, images, worker time, what one more seed or epoch adds."""
        data = self._validated(request).validated_data
        pools = data["plan"].pools
        return Response({**data["estimate"], "pools": pools})

    @extend_schema(
        request=None, responses={202: s.AuditSerializer, 403: ERROR, 404: ERROR, 409: ERROR}
    )
    def cancel(self, request, run_pk=None, pk=None):
        """Stop a queued or running audit (who asked for it, the run's owner or an admin of
        its team)."""
        audit = self.get_object()
        access.require_cancel_audit(request.user, audit)
        audit = services.cancel_audit(audit)
        return Response(s.AuditSerializer(audit).data, status=status.HTTP_202_ACCEPTED)
