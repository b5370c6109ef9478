"""Celery tasks: thin glue that calls ``ponas`` and records progress in the webapp models."""
