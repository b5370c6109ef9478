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

    def evaluated(self, metrics: dict[str, float]) -> None:
        """A deployed network's test metrics (``top1``, ``top5``), once it is built."""

    def failed(self, error: str) -> None: ...

    def should_stop(self) -> bool:
        return False


class CallbackGroup(SearchCallback):
    """Several callbacks as one: every event goes to each, in order; the search stops when
    any of them asks to (all are still polled, so each sees every step boundary)."""

    def __init__(self, *callbacks: SearchCallback) -> None:
        self.callbacks = [c for c in callbacks if c is not None]

    def stage_started(self, stage: str, total_steps: int) -> None:
        for c in self.callbacks:
            c.stage_started(stage, total_steps)

    def step(self, stage: str, step: int, total_steps: int, metrics: dict[str, float]) -> None:
        for c in self.callbacks:
            c.step(stage, step, total_steps, metrics)

    def epoch_end(self, epoch: int, epochs: int, metrics: dict[str, float]) -> None:
        for c in self.callbacks:
            c.epoch_end(epoch, epochs, metrics)

    def candidate_done(self, layer: int, candidate: str, accuracy: float) -> None:
        for c in self.callbacks:
            c.candidate_done(layer, candidate, accuracy)

    def row_done(self, layer: int, row: list[float | None], chosen: str) -> None:
        for c in self.callbacks:
            c.row_done(layer, row, chosen)

    def checkpoint_saved(self, path: Path) -> None:
        for c in self.callbacks:
            c.checkpoint_saved(path)

    def done(self, table: Any) -> None:
        for c in self.callbacks:
            c.done(table)

    def evaluated(self, metrics: dict[str, float]) -> None:
        for c in self.callbacks:
            c.evaluated(metrics)

    def failed(self, error: str) -> None:
        for c in self.callbacks:
            c.failed(error)

    def should_stop(self) -> bool:
        return any([c.should_stop() for c in self.callbacks])

    def close(self) -> None:
        """Close the members that hold something open (progress bars, event files)."""
        for c in self.callbacks:
            close = getattr(c, "close", None)
            if close is not None:
                close()


def reporting_failures(callback: SearchCallback, fn: Callable[[], T]) -> T:
    """``fn()``, telling ``callback.failed`` about any error other than a cancel."""
    try:
        return fn()
    except Cancelled:
        raise
    except Exception as exc:
        callback.failed(f"{type(exc).__name__}: {exc}")
        raise
