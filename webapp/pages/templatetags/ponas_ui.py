"""Template filters of the dashboard: costs, percentages and durations as people read them."""

from __future__ import annotations

import json
from datetime import datetime

from django import template
from django.utils import timezone

from ponas.files import LEGACY_FORMATS
from ponas.units import format_cost

register = template.Library()


@register.filter
def cost(value, kind: str) -> str:
    """``41.2M MACs``, ``3.40M params``, ``12.3 ms``; an em dash for no value."""
    if value is None or value == "":
        return "—"
    return format_cost(kind, float(value))


def _hundredths(value, digits, unit: str) -> str:
    """A fraction times 100 with ``digits`` decimals and ``unit`` after it; an em dash for no
    value."""
    if value is None or value == "":
        return "—"
    return f"{100 * float(value):.{int(digits)}f}{unit}"


@register.filter
def pct(value, digits: int = 1) -> str:
    """A fraction as a percentage: ``0.9123`` -> ``91.2%``."""
    return _hundredths(value, digits, "%")


@register.filter
def duration(start: datetime | None, end: datetime | None = None) -> str:
    """``2 h 05 min``, ``3 min 20 s``, ``45 s``: from start to end (or now)."""
    if start is None:
        return "—"
    seconds = int(((end or timezone.now()) - start).total_seconds())
    if seconds < 60:
        return f"{max(seconds, 0)} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


@register.filter
def get(mapping, key):
    """``mapping[key]`` in a template (None when missing)."""
    try:
        return mapping.get(key)
    except AttributeError:
        return None


@register.filter
def as_json(value) -> str:
    """Indented JSON (autoescaped by the template like any text)."""
    return json.dumps(value, indent=2, sort_keys=True)


@register.filter
def points(value, digits: int = 2) -> str:
    """A difference of fractions in percentage points: ``0.0042`` -> ``0.42``."""
    return _hundredths(value, digits, "")


@register.filter
def legacy_format(fmt: str) -> bool:
    """An export format kept for old runtimes only (TorchScript): offered, not checked."""
    return fmt in LEGACY_FORMATS
