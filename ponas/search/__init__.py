"""The search: stage 1 meta-training, stage 2 progressive fine-tuning -> AccuracyTable.

One file per job: ``config`` (settings and their validation), ``callbacks`` (the
progress/cancel protocol), ``context`` (device, data, batch draws), ``checkpoint`` (files),
``stage1`` (single-path meta-training, DDP), ``stage2`` (plan, fine-tune and score a layer),
``fanout`` (what workers call), ``run`` (both stages end to end). Everything reports through
a :class:`SearchCallback`; nothing here knows about Django or Celery. Checkpoints are written
after every stage-1 epoch and every stage-2 layer; a resumed search gives the same table as
an uninterrupted one with the same seed, because every random draw is seeded from
``(seed, stage, epoch or layer, candidate)`` rather than from history.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Each public name and the module that defines it. They load on first use (PEP 562) so that
# ``from ponas.search import SearchConfig`` (plain Python: the web server validates configs with
# it) does not import torch, which the training modules below need.
_WHERE = {
    "CallbackGroup": "callbacks",
    "Cancelled": "callbacks",
    "SearchCallback": "callbacks",
    "CHECKPOINT_FORMAT": "checkpoint",
    "SUPERNET_FORMAT": "checkpoint",
    "load_checkpoint": "checkpoint",
    "load_supernet": "checkpoint",
    "save_supernet": "checkpoint",
    "ConfigError": "config",
    "SearchConfig": "config",
    "resolve": "config",
    "Context": "context",
    "make_context": "context",
    "evaluate_candidate": "fanout",
    "finish_layer": "fanout",
    "finalize": "run",
    "run_search": "run",
    "run_stage2_only": "run",
    "run_stage1": "stage1",
    "choose_best": "stage2",
    "search_layer": "stage2",
}

if TYPE_CHECKING:
    from ponas.search.callbacks import CallbackGroup, Cancelled, SearchCallback
    from ponas.search.checkpoint import (
        CHECKPOINT_FORMAT,
        SUPERNET_FORMAT,
        load_checkpoint,
        load_supernet,
        save_supernet,
    )
    from ponas.search.config import ConfigError, SearchConfig, resolve
    from ponas.search.context import Context, make_context
    from ponas.search.fanout import evaluate_candidate, finish_layer
    from ponas.search.run import finalize, run_search, run_stage2_only
    from ponas.search.stage1 import run_stage1
    from ponas.search.stage2 import choose_best, search_layer


def __getattr__(name: str) -> Any:
    """Load the module that defines ``name`` on first access."""
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])


__all__ = [
    "CHECKPOINT_FORMAT",
    "SUPERNET_FORMAT",
    "CallbackGroup",
    "Cancelled",
    "ConfigError",
    "Context",
    "SearchCallback",
    "SearchConfig",
    "choose_best",
    "evaluate_candidate",
    "finalize",
    "finish_layer",
    "load_checkpoint",
    "load_supernet",
    "make_context",
    "resolve",
    "run_search",
    "run_stage1",
    "run_stage2_only",
    "save_supernet",
    "search_layer",
]
assert set(__all__) == set(_WHERE), "every public name needs its module in _WHERE"
