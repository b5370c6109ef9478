"""API conventions shared by every app: the error shape, the exception handler, pagination
(the JSON parser, which bounds nesting, is in ``webapp.parsers``)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import Http404, JsonResponse
from django.views.defaults import bad_request as django_bad_request
from django.views.defaults import page_not_found
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse
from rest_framework.exceptions import NotFound
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from webapp.runs.access import Forbidden
from webapp.runs.services import Conflict, QuotaExceeded


def error(message: str, status_code: int) -> Response:
    """The one shape of a non-field error: ``{"error": "..."}``."""
    return Response({"error": message}, status=status_code)


# Longest text an error message carries: a message that quotes the input is cut (an input of
# megabytes is not echoed back whole).
MAX_MESSAGE = 1000


def too_big_message() -> str:
    """What a request whose body is over ``DATA_UPLOAD_MAX_MEMORY_SIZE`` reads."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return f"the request body is larger than this server takes ({limit / 2**20:.1f} MB)"


def bounded(data: Any) -> Any:
    """``data`` (an error response's body) with every text cut to ``MAX_MESSAGE``."""
    if isinstance(data, str):
        return data if len(data) <= MAX_MESSAGE else data[: MAX_MESSAGE - 3] + "..."
    if isinstance(data, dict):
        return {bounded(k): bounded(v) for k, v in data.items()}
    if isinstance(data, list):
        return [bounded(v) for v in data]
    return data


def exception_handler(exc, context):
    """DRF's handler, with ``{"detail": ...}`` (401, 403, 404, 405, ...) as ``{"error": ...}``;
    a state change refused for the object's status (:class:`services.Conflict`) is a 409, one
    beyond the user's quota (:class:`services.QuotaExceeded`) a 429, one the user may not make
    on a run they see (:class:`access.Forbidden`: a team member, not its admin) a 403; a body
    over the size limit (and any request Django finds suspicious) a 400. Texts are cut to
    ``MAX_MESSAGE`` characters."""
    if isinstance(exc, RequestDataTooBig):
        return error(too_big_message(), 400)
    if isinstance(exc, SuspiciousOperation):
        return error(f"bad request: {exc}", 400)
    if isinstance(exc, Forbidden):
        return error(str(exc), 403)
    if isinstance(exc, Conflict):
        return error(str(exc), 409)
    if isinstance(exc, QuotaExceeded):
        return error(str(exc), 429)
    response = drf_exception_handler(exc, context)
    if response is not None:
        data = response.data
        if isinstance(data, dict) and set(data) == {"detail"}:
            response.data = {"error": str(data["detail"])}
        elif isinstance(data, list):
            response.data = {"error": " ".join(str(d) for d in data)}
        response.data = bounded(response.data)
    return response


ERROR = OpenApiResponse(
    {"type": "object", "properties": {"error": {"type": "string"}}}, description="error"
)

# A list answers 400 for a bad filter value and 404 for a page past the end.
LIST_ERRORS = {400: OpenApiTypes.OBJECT, 404: ERROR}


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
            pk = str(self.kwargs.get("pk"))
            shown = pk if len(pk) <= 20 else "(huge id)"  # an id of thousands of digits
            raise NotFound(f"{self.noun} {shown} not found") from None


def document_common_errors(result, generator, request, public):
    """drf-spectacular postprocessing hook: the errors any operation can answer, documented
    once: 401 (no or a bad token) where authentication is required, 415 where a body is read
    (a body in a media type the operation does not take), both as ``{"error": ...}``."""
    shape = {
        "description": "error",
        "content": {
            "application/json": {
                "schema": {"type": "object", "properties": {"error": {"type": "string"}}}
            }
        },
    }
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            if any(operation.get("security") or [{}]):  # [{}]/none: anonymous allowed
                responses.setdefault("401", shape)
            if "requestBody" in operation:
                responses.setdefault("415", shape)
    return result


def bad_request(request, exception=None):
    """The 400 handler (a request Django refused before any view read it: a body over the
    size limit, too many fields): under /api/ a JSON error, elsewhere Django's page."""
    if request.path.startswith("/api/"):
        if isinstance(exception, RequestDataTooBig):
            return JsonResponse({"error": too_big_message()}, status=400)
        return JsonResponse({"error": "bad request"}, status=400)
    return django_bad_request(request, exception)


def not_found(request, exception=None):
    """The 404 handler: under /api/ a JSON error like every other API error (e.g. an id that
    is not a number), elsewhere Django's page."""
    if request.path.startswith("/api/"):
        return JsonResponse({"error": f"no such API resource: {request.path}"}, status=404)
    return page_not_found(request, exception)
