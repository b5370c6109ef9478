"""The workers resource of the REST API: the live workers, read from the worker registry."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, viewsets

from webapp.api import ERROR
from webapp.runs import serializers as s
from webapp.runs import workers


@extend_schema_view(list=extend_schema(responses={200: s.WorkerSerializer(many=True), 404: ERROR}))
class WorkerViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """Live workers: name, the queues they consume, device, torch version, the task each
    runs and when it was last seen (from the worker registry, written by the workers)."""

    serializer_class = s.WorkerSerializer

    def get_queryset(self):
        return workers.live_workers()
