"""URLs: the REST API under /api/, its OpenAPI schema and Swagger UI, and the admin."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from webapp.accounts import throttled_sign_in

urlpatterns = [
    path("api/", include("webapp.runs.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    # the admin's sign-in counts against the same throttles as the login page and the API's
    path("admin/login/", throttled_sign_in(admin.site.login)),
    path("admin/", admin.site.urls),
    path("", include("webapp.pages.urls")),
]

handler400 = "webapp.api.bad_request"
handler404 = "webapp.api.not_found"
