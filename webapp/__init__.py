"""PONAS Studio's Django project: settings, urls, the Celery app and the runs app."""

from webapp.celery import app as celery_app

__all__ = ["celery_app"]
