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
from ponas.search.run import finalize, run_search
from ponas.search.stage1 import run_stage1
from ponas.search.stage2 import choose_best, search_layer

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
    "save_supernet",
    "search_layer",
]
