"""Counts as people type and read them: budgets (``300M``, ``5.1m``, ``20``) and costs
(``326M MACs``, ``5.10M params``, ``12.3 ms``). One formatter for the CLI, model cards and pages.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal

_BUDGET_RE = re.compile(
    r"^(?P<num>(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)(?P<suf>[kKmMgG]?)$"
)
_SUFFIX_EXP = {"": 0, "k": 3, "m": 6, "g": 9}
_BUDGET_FORMS = "a positive number with an optional K, M or G suffix (e.g. 300M, 5.1m, 2e6, 20)"


def parse_budget(text: str | float) -> float:
    """A budget from the command line or a query string: ``300M``, ``5.1m``, ``2e6``, ``20``.

    Suffixes K, M and G (any case) multiply by 1e3, 1e6 and 1e9. The result is > 0 and finite;
    anything else raises :class:`ValueError` naming the bad value and the accepted forms.
    """
    shown = repr(text)
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise ValueError(f"invalid budget {shown}: expected {_BUDGET_FORMS}")
    if isinstance(text, str):
        m = _BUDGET_RE.match(text.strip())
        if not m:
            raise ValueError(f"invalid budget {shown}: expected {_BUDGET_FORMS}")
        # Decimal, then one rounding to float: "5.1M" is exactly the float 5.1e6
        try:
            value = float(Decimal(m["num"]).scaleb(_SUFFIX_EXP[m["suf"].lower()]))
        except ArithmeticError:  # decimal.Overflow: an exponent past Decimal's (1e9999999)
            value = math.inf
        if math.isinf(value):
            raise ValueError(f"invalid budget {shown}: the number is too large")
    else:
        value = float(text)
        if not math.isfinite(value):
            raise ValueError(f"invalid budget {shown}: expected {_BUDGET_FORMS}")
    if value <= 0:
        raise ValueError(f"invalid budget {shown}: a budget must be greater than 0")
    return value


def _sig3(x: float) -> str:
    """Three significant digits, trailing zeros kept: 3.40, 41.2, 326."""
    if x == 0:
        return "0"
    decimals = max(0, 2 - math.floor(math.log10(abs(x))))
    text = f"{x:.{decimals}f}"
    if decimals and abs(float(text)) >= 10 ** (3 - decimals):  # 9.996 -> "10.00": one too many
        text = f"{x:.{decimals - 1}f}"
    return text


def format_count(x: float) -> str:
    """A count with three significant digits and a K, M or G suffix: ``326M``, ``5.10M``, ``960``.

    The one formatter for MACs and parameter counts: ``ponas describe``, model cards and the
    web pages all print through it (via :func:`format_cost` where a unit follows).
    """
    if abs(x) < 1000:
        return str(int(x)) if float(x).is_integer() else _sig3(x)
    for div, suffix in ((1e3, "K"), (1e6, "M"), (1e9, "G")):
        text = _sig3(x / div)
        if abs(float(text)) < 1000 or suffix == "G":
            return text + suffix
    raise AssertionError("unreachable")


_UNITS = {"macs": "MACs", "params": "params", "latency_ms": "ms"}
# what each cost kind measures, as a sentence names it
WHAT = {"macs": "MACs", "params": "parameter count", "latency_ms": "latency"}


def format_cost(kind: str, value: float, precise: bool = False) -> str:
    """A cost for people: ``41.2M MACs``, ``3.40M params``, ``12.3 ms``.

    ``precise=True`` writes every digit (``41,234,567 MACs``, ``12.345678 ms``), for when
    three significant digits would hide the difference between two values.
    """
    unit = _UNITS.get(kind, kind)
    if precise:
        if float(value).is_integer():
            return f"{int(value):,} {unit}"
        return f"{float(value)!r} {unit}"
    if kind == "latency_ms":
        return f"{_sig3(value)} ms"
    return f"{format_count(value)} {unit}"


def format_budget(value: float) -> str:
    """A budget as a user would type it: 1000, 300M, 5.1M, 12.5."""
    if math.isfinite(value) and abs(value) >= 1e6:
        for div, suffix in ((1e9, "G"), (1e6, "M")):
            if abs(value) >= div:
                text = repr(value / div).removesuffix(".0")
                if len(text) <= 6 and float(Decimal(text).scaleb(int(math.log10(div)))) == value:
                    return text + suffix
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def budget_name(kind: str) -> str:
    """The budget's name as the API and messages spell it: ``max_macs``."""
    return f"max_{kind}"
