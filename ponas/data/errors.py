"""How a data set's errors read: an exception's text on one line, for :class:`DatasetError`."""

from __future__ import annotations

from ponas.catalog import DatasetError

__all__ = ["DatasetError", "one_line"]


def one_line(exc: BaseException) -> str:
    """An exception's text on one line (error messages here must stay one line)."""
    return " ".join(str(exc).split()) or type(exc).__name__
