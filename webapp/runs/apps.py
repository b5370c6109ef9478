"""The runs app's Django configuration: its label, and what it connects when Django is ready."""

from django.apps import AppConfig


class RunsConfig(AppConfig):
    name = "webapp.runs"
    label = "runs"
    verbose_name = "Searches and deployments"

    def ready(self) -> None:
        from webapp import accounts  # noqa: F401  (revokes tokens when a password changes)
