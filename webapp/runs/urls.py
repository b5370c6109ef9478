"""API routes under /api/ (DESIGN.md "REST API")."""

from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.routers import DefaultRouter

from webapp.runs.api import DeploymentViewSet, RunViewSet


@extend_schema(
    responses={
        200: inline_serializer("AuthToken", {"token": serializers.CharField()}),
        # {"field": ["reason"]}, or {"error": "..."} for a body that does not parse
        400: OpenApiTypes.OBJECT,
    }
)
class TokenView(ObtainAuthToken):
    """A token for a username and password (400 with the reason otherwise)."""

    authentication_classes = ()  # it is how one signs in: no credentials needed, none read


router = DefaultRouter()
router.register("runs", RunViewSet, basename="run")
router.register("deployments", DeploymentViewSet, basename="deployment")

urlpatterns = [
    path("auth/token/", TokenView.as_view(), name="auth-token"),
    *router.urls,
]
