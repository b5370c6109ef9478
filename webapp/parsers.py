"""The API's JSON parser: DRF's, with nesting bounded (a 400, never a RecursionError).

Its own module: DRF imports the parser classes of its settings while ``rest_framework.views``
loads, so this module imports no view."""

from __future__ import annotations

from typing import Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError

# Deepest nesting of arrays and objects a JSON body may have: far more than any request of
# this API needs (a run's config is flat), far less than Python's recursion limit, which
# json.load and every recursive walk of the data would otherwise reach (a 500).
MAX_JSON_DEPTH = 32


def json_depth(value: Any) -> int:
    """How deeply arrays and objects nest in ``value`` (a scalar: 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = item.values()
        elif not isinstance(item, list):
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in item if isinstance(child, dict | list))
    return deepest


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, with nesting bounded by ``MAX_JSON_DEPTH``."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:  # json.load itself gave up: far too deep
            data, depth = None, MAX_JSON_DEPTH + 1
        else:
            depth = json_depth(data)
        if depth > MAX_JSON_DEPTH:
            raise ParseError(
                "JSON parse error - arrays and objects nested more than "
                f"{MAX_JSON_DEPTH} levels deep (the most this API reads)"
            )
        return data
