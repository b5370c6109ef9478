"""The audits resource of the REST API, nested under a run (``runs/{run}/audits/``): start,
estimate, list, read and cancel the audits of its table."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from webapp.api import ERROR, LIST_ERRORS, OwnedObjectMixin
from webapp.runs import access, services
from webapp.runs import serializers as s
from webapp.runs.models import Audit, SearchRun


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
        services.require_table(self.run(), "audit a succeeded run")
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
