"""The runs resource of the REST API: searches and what is asked of their stored tables (the
table itself, budget previews, Pareto frontiers, plans, TensorBoard events), their device
profiles, and their redraws (stage 2 again on a run's supernet) with their entry noise."""

from __future__ import annotations

import django_filters.rest_framework as filters
from django.http import HttpResponse, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, NotFound
from rest_framework.response import Response
from rest_framework.serializers import Serializer

from ponas import noise
from ponas.solve import pareto_frontier
from ponas.table import AccuracyTable
from webapp.api import ERROR, LIST_ERRORS, OwnedObjectMixin, choices_message, error
from webapp.runs import access, services
from webapp.runs import serializers as s
from webapp.runs.models import DeviceProfile, SearchRun, Status
from webapp.runs.serializers.runs import RedrawSerializer
from webapp.runs.tables import accuracy_table
from webapp.runs.tracking import events_archive


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


# A question of a run's stored table answers 400 for a bad query, 404 for a run the user does
# not see and 409 for one with no table yet.
TABLE_ERRORS = {400: OpenApiTypes.OBJECT, 404: ERROR, 409: ERROR}


class NoTable(APIException):
    """409: the run has no accuracy table (yet)."""

    status_code = status.HTTP_409_CONFLICT

    def __init__(self, run: SearchRun) -> None:
        super().__init__(services.no_table(run, "it is ready once the run has succeeded"))


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
        request=RedrawSerializer,
        responses={
            201: s.SearchRunSerializer,
            400: OpenApiTypes.OBJECT,
            403: ERROR,
            404: ERROR,
            409: ERROR,
            429: ERROR,
        },
    )
    @action(detail=True, methods=["post"])
    def redraw(self, request, pk=None):
        """Stage 2 again on this succeeded run's stage-1 supernet with another ``stage2_seed``
        (and optionally other stage-2 settings): a new run whose ``source_run`` is this one,
        counted in the user's quota of runs; once it succeeds, ``noise/`` on it says how much
        a table entry moves between the two draws (the owner or an admin of the run's team)."""
        run = self.managed_run("run stage 2 again on")
        query = RedrawSerializer(data=request.data, context={"request": request, "run": run})
        query.is_valid(raise_exception=True)
        redraw = services.redraw_run(request.user, run, query.validated_data)
        return Response(s.SearchRunSerializer(redraw).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={200: OpenApiTypes.OBJECT, 404: ERROR, 409: ERROR})
    @action(detail=True, methods=["get"])
    def noise(self, request, pk=None):
        """A redraw's entry noise against its source run (``ponas-noise/1``: per layer the sd
        of an entry between the two draws against the row's spread, the budget, and the two
        tables' self-agreement), once the redraw has succeeded."""
        run = self.get_object()
        doc = noise.load(run.noise_file) if run.status == Status.SUCCEEDED else None
        if doc is not None:
            return Response(doc)
        if run.source_run_id is None and not run.noise_file.exists():
            return error(
                f"run {run.pk} is not a redraw: its entry noise is measured by a redraw of it "
                f"(POST /api/runs/{run.pk}/redraw/), on that run",
                status.HTTP_404_NOT_FOUND,
            )
        if run.status != Status.SUCCEEDED:
            return error(
                f"run {run.pk} is {run.status}: its entry noise is written once it has succeeded",
                status.HTTP_409_CONFLICT,
            )
        return error(f"run {run.pk} has no entry noise (noise.json)", status.HTTP_404_NOT_FOUND)

    @extend_schema(
        parameters=[s.TableQuerySerializer],
        responses={
            (200, "application/json"): OpenApiTypes.OBJECT,
            (200, "text/csv"): OpenApiTypes.STR,
            **TABLE_ERRORS,
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
        responses={200: s.SelectionSerializer, **TABLE_ERRORS},
    )
    @action(detail=True, methods=["get"])
    def preview(self, request, pk=None):
        """The most accurate network within the budgets, from the stored table (no worker)."""
        query, run, table = self.stored_table(s.BudgetQuerySerializer)
        try:
            selection = services.select(table, query.budgets())
        except services.Refused as exc:
            return Response({exc.field: [str(exc)]}, status=status.HTTP_400_BAD_REQUEST)
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
        responses={200: OpenApiTypes.OBJECT, **TABLE_ERRORS},
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
