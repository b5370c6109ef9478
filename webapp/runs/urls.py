"""API routes under /api/ (DESIGN.md "REST API")."""

from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.exceptions import Throttled
from rest_framework.response import Response
from rest_framework.routers import DefaultRouter
from rest_framework.views import APIView

from webapp.accounts import SIGN_IN_THROTTLES, issue_token, too_many_attempts
from webapp.api import ERROR
from webapp.runs.api import AuditViewSet, DeploymentViewSet, RunViewSet, WorkerViewSet


@extend_schema(
    request=AuthTokenSerializer,
    responses={
        200: inline_serializer(
            "AuthToken", {"token": serializers.CharField(), "expiry": serializers.DateTimeField()}
        ),
        # {"field": ["reason"]}, or {"error": "..."} for a body that does not parse
        400: OpenApiTypes.OBJECT,
        429: ERROR,
    },
)
class TokenView(APIView):
    """A new API token for a username and password (400 with the reason otherwise); it
    expires (``expiry``) and can be revoked on the Tokens page. Attempts are throttled per
    user and per address (429 with Retry-After)."""

    authentication_classes = ()  # it is how one signs in: no credentials needed, none read
    permission_classes = ()
    throttle_classes = SIGN_IN_THROTTLES
    serializer_class = AuthTokenSerializer

    def throttled(self, request, wait):
        message, seconds = too_many_attempts(wait)
        exc = Throttled(detail=message)
        exc.wait = seconds  # the Retry-After header (not appended to the message)
        raise exc

    def post(self, request):
        serializer = AuthTokenSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        instance, token = issue_token(serializer.validated_data["user"])
        return Response({"token": token, "expiry": instance.expiry})


router = DefaultRouter()
router.register("runs", RunViewSet, basename="run")
router.register("deployments", DeploymentViewSet, basename="deployment")
router.register("workers", WorkerViewSet, basename="worker")

# a run's audits, nested under it (runs/{run}/audits/...)
AUDITS = "runs/<int:run_pk>/audits/"
audit_urls = [
    path(AUDITS, AuditViewSet.as_view({"get": "list", "post": "create"}), name="run-audits"),
    path(
        AUDITS + "estimate/",
        AuditViewSet.as_view({"post": "estimate"}),
        name="run-audit-estimate",
    ),
    path(AUDITS + "<int:pk>/", AuditViewSet.as_view({"get": "retrieve"}), name="run-audit"),
    path(
        AUDITS + "<int:pk>/cancel/",
        AuditViewSet.as_view({"post": "cancel"}),
        name="run-audit-cancel",
    ),
]

urlpatterns = [
    path("auth/token/", TokenView.as_view(), name="auth-token"),
    *audit_urls,
    *router.urls,
]
