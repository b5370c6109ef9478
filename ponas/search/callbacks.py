"""The progress/cancel protocol between the search and whoever runs it (CLI, Celery tasks)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class Cancelled(Exception):
    """The callback asked the search to stop; the last checkpoint is intact."""


class SearchCallback:
    """Receives progress. Subclass and override what you need; all methods are optional.

    ``should_stop`` is polled at every step boundary: returning True raises :class:`Cancelled`
    there, leaving the last checkpoint intact.
    """

    def stage_started(self, stage: str, total_steps: int) -> None: ...

    def step(self, stage: str, step: int, total_steps: int, metrics: dict[str, float]) -> None: ...

    def epoch_end(self, epoch: int, epochs: int, metrics: dict[str, float]) -> None: ...

    def candidate_done(self, layer: int, candidate: str, accuracy: float) -> None: ...

    def row_done(self, layer: int, row: list[float | None], chosen: str) -> None: ...

    def checkpoint_saved(self, path: Path) -> None: ...

    def done(self, table: Any) -> None: ...

    def failed(self, error: str) -> None: ...

    def should_stop(self) -> bool:
        return False


def reporting_failures(callback: SearchCallback, fn: Callable[[], T]) -> T:
    """``fn()``, telling ``callback.failed`` about any error other than a cancel."""
    try:
        return fn()
    except Cancelled:
        raise
    except Exception as exc:
        callback.failed(f"{type(exc).__name__}: {exc}")
        raise
