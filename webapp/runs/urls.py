"""API routes under /api/ (DESIGN.md "REST API")."""

from django.urls import path
from rest_framework.authtoken.views import obtain_auth_token
from rest_framework.routers import DefaultRouter

from webapp.runs.api import DeploymentViewSet, RunViewSet

router = DefaultRouter()
router.register("runs", RunViewSet, basename="run")
router.register("deployments", DeploymentViewSet, basename="deployment")

urlpatterns = [
    path("auth/token/", obtain_auth_token, name="auth-token"),
    *router.urls,
]
