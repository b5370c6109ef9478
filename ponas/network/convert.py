"""Rewriting a weights file in another layout: a bundle or a state dict (ours or the
reference's) in, a bundle or the reference's plain state dict out."""

from __future__ import annotations

from pathlib import Path

import torch

from ponas.files import atomic_write
from ponas.network.bundle import BundleError, load_bundle, save_bundle
from ponas.network.model import Network
from ponas.network.resolve import network_for_weights
from ponas.network.weights import check_layout, to_layout


def convert_weights(
    src: str | Path, dst: str | Path, to: str, model: str | None = None
) -> tuple[Network, Path]:
    """Write the weights of ``src`` (a bundle, or a state dict in our layout or the reference's)
    to ``dst`` in layout ``to``: ``"ponas"`` gives a bundle (what ``ponas evaluate`` and
    ``ponas describe`` take), ``"reference"`` a plain state dict that the reference's
    ``test.py`` loads. ``model`` names the network of a plain state dict (see
    :func:`ponas.network.network_for_weights`). Returns ``(network, dst)``.
    """
    check_layout(to)
    try:
        net, _ = load_bundle(src)
    except BundleError:
        net = network_for_weights(src, model)
    if to == "ponas":
        return net, save_bundle(dst, net)
    state = to_layout(net, "reference")
    return net, atomic_write(dst, lambda tmp: torch.save(state, tmp))
