"""What a web or API user may ask a worker for: every setting that allocates (processes, memory)
or occupies a worker (steps) is bounded by a server-side limit (``PONAS_LIMITS``), and a run's
in-memory data is estimated before it is queued. The CLI is not bound by these: it runs as its
user, on their machine."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from ponas.search.config import SearchConfig
from webapp.runs.datasets import data_memory_mb

# Longest string a user may store in a setting, a name or a dataset name (characters).
MAX_TEXT = 200


def over_limit(preset: str, config: dict[str, Any], cfg: SearchConfig) -> str | None:
    """Why the resolved settings ``cfg`` (``preset`` + ``config``) are more than this server
    runs for a user, or None."""
    for key, limit in settings.PONAS_LIMITS.items():
        value = getattr(cfg, key)
        if value > limit:
            return f"{key}={value:,} is above this server's limit of {limit:,}"
    memory = data_memory_mb(preset, config, cfg.input_size)
    if memory is not None and memory > settings.PONAS_MAX_DATA_MEMORY_MB:
        return (
            f"input_size={cfg.input_size}: the {cfg.dataset} images alone would take "
            f"{memory:,.0f} MB of memory at this size; this server's limit is "
            f"{settings.PONAS_MAX_DATA_MEMORY_MB:,} MB"
        )
    return None


def long_text(config: dict[str, Any]) -> str | None:
    """Why a setting's value is too long to store, or None: a string longer than
    ``MAX_TEXT`` anywhere in it (inside lists and objects too)."""
    for key, value in config.items():
        stack = [value]
        while stack:
            item = stack.pop()
            if isinstance(item, str) and len(item) > MAX_TEXT:
                return f"{key}: at most {MAX_TEXT} characters, got {len(item):,}"
            if isinstance(item, list):
                stack.extend(item)
            elif isinstance(item, dict):
                stack.extend([*item, *item.values()])
    return None


def audit_over_limit(key: str, value: int) -> str | None:
    """Why an audit's ``key`` (budgets, networks, epochs, seeds, trainings) of ``value`` is
    more than this server runs for a user (``PONAS_AUDIT_LIMITS``), or None."""
    limit = settings.PONAS_AUDIT_LIMITS[key]
    if value > limit:
        return f"{key}={value:,} is above this server's limit of {limit:,}"
    return None
