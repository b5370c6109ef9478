"""Standalone networks: the model, its weights files, and what a model name or file means.

One file per job: ``model`` (:class:`Network`, one architecture of a space), ``weights`` (state
dicts in our layout or the reference's), ``bundle`` (the self-contained ``.pt`` checkpoint),
``resolve`` (the released PONAS-A/B/C, architecture files, ``resolve_model``,
``network_for_weights``), ``convert`` (a weights file rewritten in another layout). Imports
point one way: resolve and convert -> bundle, weights -> model. This ``__init__`` only
re-exports, so ``from ponas.network import Network, load_weights, resolve_model`` keeps working.
"""

from ponas.network.model import Network
from ponas.network.resolve import (
    RELEASED,
    build_released,
    load_architecture,
    network_for_weights,
    released_name,
    resolve_model,
)
from ponas.network.weights import (
    LAYOUTS,
    WeightsError,
    load_state,
    load_weights,
    read_state_dict,
    reference_names,
    to_layout,
)

__all__ = [
    "LAYOUTS",
    "RELEASED",
    "Network",
    "WeightsError",
    "build_released",
    "load_architecture",
    "load_state",
    "load_weights",
    "network_for_weights",
    "read_state_dict",
    "reference_names",
    "released_name",
    "resolve_model",
    "to_layout",
]
