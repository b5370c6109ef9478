"""The dashboard pages app's Django configuration."""

from django.apps import AppConfig


class PagesConfig(AppConfig):
    name = "webapp.pages"
    label = "pages"
    verbose_name = "Dashboard pages"
