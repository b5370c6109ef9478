"""Costs of every (layer, candidate) and of the fixed parts: MACs, params, measured latency.

Torch-free, a leaf of ``ponas``: the formulas (:mod:`ponas.cost.formulas`), the latency lookup
table format (:mod:`ponas.cost.latency`, described in docs/latency.md) and the statistics of
profiling (:mod:`ponas.cost.fit`). Latency is measured, not computed: the timing on a device is
:mod:`ponas.profile`, whose names (``profile_latency``, ``latency_error``, ...) this package
still answers to, importing torch only when one is asked for.
"""

from __future__ import annotations

import importlib
from typing import Any

from ponas.cost.fit import (
    FIT_NETWORKS,
    check_rows,
    context_rounds,
    extreme_architectures,
    fit_overhead,
    prediction_quality,
    random_architectures,
)
from ponas.cost.formulas import (
    Cost,
    base_cost,
    candidate_cost,
    cost_tables,
    mbconv_cost,
    network_cost,
)
from ponas.cost.latency import (
    CLOCKS,
    LUT_FORMAT,
    check_lut,
    load_lut,
    lut_fit,
    predict_latency,
    with_latency,
)

#: Names that moved to :mod:`ponas.profile` (they time on a device, with torch). The
#: compatibility path: ``from ponas.cost import profile_latency`` keeps working, importing
#: ``ponas.profile`` only then, so this package never imports torch or ponas.network.
_PROFILE_NAMES = ("device_name", "latency_error", "plain_method", "plain_times", "profile_latency")

__all__ = [
    "CLOCKS",
    "FIT_NETWORKS",
    "LUT_FORMAT",
    "Cost",
    "base_cost",
    "candidate_cost",
    "check_lut",
    "check_rows",
    "context_rounds",
    "cost_tables",
    "extreme_architectures",
    "fit_overhead",
    "load_lut",
    "lut_fit",
    "mbconv_cost",
    "network_cost",
    "predict_latency",
    "prediction_quality",
    "random_architectures",
    "with_latency",
    *_PROFILE_NAMES,
]


def __getattr__(name: str) -> Any:
    if name in _PROFILE_NAMES:
        return getattr(importlib.import_module("ponas.profile"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
