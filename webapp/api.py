"""API conventions shared by every app: the error shape, the exception handler, pagination."""

from __future__ import annotations

from django.http import Http404
from drf_spectacular.utils import OpenApiResponse
from rest_framework.exceptions import NotFound
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


def error(message: str, status_code: int) -> Response:
    """The one shape of a non-field error: ``{"error": "..."}``."""
    return Response({"error": message}, status=status_code)


def exception_handler(exc, context):
    """DRF's handler, with ``{"detail": ...}`` (401, 403, 404, 405, ...) as ``{"error": ...}``."""
    response = drf_exception_handler(exc, context)
    if response is not None:
        data = response.data
        if isinstance(data, dict) and set(data) == {"detail"}:
            response.data = {"error": str(data["detail"])}
        elif isinstance(data, list):
            response.data = {"error": " ".join(str(d) for d in data)}
    return response


ERROR = OpenApiResponse(
    {"type": "object", "properties": {"error": {"type": "string"}}}, description="error"
)


class Pagination(PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 500


def choices_message(field: str, values) -> str:
    """A django-filter choice error that lists the allowed values."""
    return f'"%(value)s" is not a {field}; allowed: {", ".join(values)}'


class OwnedObjectMixin:
    """``get_object`` whose 404 names the object, the same for missing and not-yours."""

    noun = "object"

    def get_object(self):
        try:
            return super().get_object()
        except Http404:
            raise NotFound(f"{self.noun} {self.kwargs.get('pk')} not found") from None
