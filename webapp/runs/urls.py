"""API routes under /api/ (DESIGN.md "REST API")."""

from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, inline_serializer
from knox.auth import TokenAuthentication
from rest_framework import serializers, status
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.exceptions import Throttled, ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.routers import DefaultRouter
from rest_framework.views import APIView

from webapp.accounts import count_failed_sign_in, issue_token, sign_in_refused, too_many_attempts
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
    expires (``expiry``) and can be revoked on the Tokens page or with ``auth/logout/``.
    Failed attempts are throttled per user name and address, per user name and per address
    (429 with Retry-After); a successful one, or any GET, counts against nothing."""

    authentication_classes = ()  # it is how one signs in: no credentials needed, none read
    permission_classes = ()
    serializer_class = AuthTokenSerializer

    def post(self, request):
        wait = sign_in_refused(request)
        if wait is not None:
            message, seconds = too_many_attempts(wait)
            exc = Throttled(detail=message)
            exc.wait = seconds  # the Retry-After header (not appended to the message)
            raise exc
        serializer = AuthTokenSerializer(data=request.data, context={"request": request})
        if not serializer.is_valid():
            count_failed_sign_in(request)
            raise ValidationError(serializer.errors)
        instance, token = issue_token(serializer.validated_data["user"])
        return Response({"token": token, "expiry": instance.expiry})


@extend_schema(request=None, responses={204: None})
class LogoutView(APIView):
    """Revoke the API token this request is made with (``ponas remote logout``): it is
    refused from then on. Other tokens of the user stay valid (the Tokens page lists them)."""

    authentication_classes = (TokenAuthentication,)  # a token, not a browser session
    permission_classes = (IsAuthenticated,)

    def post(self, request):
        request.auth.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


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
    path("auth/logout/", LogoutView.as_view(), name="auth-logout"),
    *audit_urls,
    *router.urls,
]
