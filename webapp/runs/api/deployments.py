"""The deployments resource of the REST API: networks built for budgets from a run's table,
filtered by status and run, and their exported files."""

from __future__ import annotations

import django_filters.rest_framework as filters
from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action

from ponas.files import FILENAMES
from webapp.api import ERROR, LIST_ERRORS, OwnedObjectMixin, choices_message, error
from webapp.runs import access, services
from webapp.runs import serializers as s
from webapp.runs.models import FORMATS, Deployment, SearchRun, Status


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
