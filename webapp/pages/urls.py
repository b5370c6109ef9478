"""Dashboard pages and sign-in/out; the REST API they call lives under /api/."""

from django.contrib.auth import views as auth_views
from django.urls import path

from webapp.accounts import throttled_sign_in
from webapp.pages import views

app_name = "pages"

urlpatterns = [
    path("", views.runs_list, name="runs"),
    path("runs/new/", views.run_new, name="run-new"),
    path("runs/<int:pk>/", views.run_detail, name="run"),
    path("runs/<int:pk>/redraw/", views.run_redraw, name="run-redraw"),
    path("deployments/", views.deployments_list, name="deployments"),
    path("deployments/<int:pk>/", views.deployment_detail, name="deployment"),
    path("workers/", views.workers_list, name="workers"),
    path("account/tokens/", views.tokens, name="tokens"),
    path(
        "accounts/login/",
        throttled_sign_in(
            auth_views.LoginView.as_view(redirect_authenticated_user=True, next_page="pages:runs")
        ),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(next_page="pages:login"), name="logout"),
]
