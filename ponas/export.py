"""Checkpoint bundles, TorchScript, ONNX and model cards for a specialized network.

A bundle (``.pt``) holds everything needed to rebuild and run the network with no other
file: ``{"format": "ponas-bundle/1", "state_dict", "choices", "space" (full spec),
"preprocessing": {"input_size", "mean", "std"}, "metrics", "cost", "versions"}``.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import torch

from ponas.files import (
    FILENAMES,
    FORMATS,
    MODEL_CARD_FILE,
    atomic_write,
    atomic_write_text,
    load_file,
)
from ponas.network import LAYOUTS, Network, network_for_weights, to_layout
from ponas.space import SearchSpace
from ponas.units import format_cost, format_count

BUNDLE_FORMAT = "ponas-bundle/1"


class BundleError(ValueError):
    """A file is not a loadable PONAS bundle."""


def versions() -> dict[str, str]:
    """Library versions recorded in tables and bundles."""
    import torchvision

    from ponas import __version__

    return {
        "ponas": __version__,
        "torch": str(torch.__version__),
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
    }


def save_bundle(
    path: str | Path,
    model: Network,
    metrics: dict[str, Any] | None = None,
    cost: dict[str, float] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a self-contained checkpoint bundle for ``model``."""
    space = model.space
    bundle = {
        "format": BUNDLE_FORMAT,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "choices": list(model.choices),
        "space": space.to_dict(),
        "preprocessing": {
            "input_size": space.input_size,
            "mean": list(space.mean),
            "std": list(space.std),
        },
        "metrics": dict(metrics or {}),
        "cost": dict(cost or {}),
        "versions": versions(),
        **(extra or {}),
    }
    return atomic_write(path, lambda tmp: torch.save(bundle, tmp))


def is_bundle(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("format") == BUNDLE_FORMAT


def read_bundle(path: str | Path) -> dict[str, Any]:
    """Load a bundle's contents onto the CPU, whatever device it was saved from."""
    path = Path(path)
    obj = load_file(path, BundleError, " (expected a PONAS checkpoint bundle .pt)")
    if not is_bundle(obj):
        raise BundleError(
            f"{path}: not a PONAS bundle (expected a dict with format {BUNDLE_FORMAT!r}; "
            "plain weights go with --model PONASA|PONASB|PONASC and --pretrain)"
        )
    return obj


def load_bundle(path: str | Path) -> tuple[Network, dict[str, Any]]:
    """Rebuild the network of a bundle with its weights; returns ``(model, bundle)``."""
    bundle = read_bundle(path)
    model = Network(SearchSpace.from_dict(bundle["space"]), bundle["choices"])
    model.load_state_dict(bundle["state_dict"])
    return model.eval(), bundle


def export_torchscript(path: str | Path, model: Network) -> Path:
    """A TorchScript file (``torch.jit.trace`` of the eval-mode network) runnable without ponas."""
    model = model.eval()
    example = torch.randn(
        1, model.space.in_channels, model.space.input_size, model.space.input_size
    )
    import warnings

    with warnings.catch_warnings():
        # TorchScript is deprecated upstream but still the format most C++/mobile runtimes load
        warnings.simplefilter("ignore", FutureWarning)
        with torch.no_grad():
            scripted = torch.jit.trace(model, example)
        return atomic_write(path, lambda tmp: torch.jit.save(scripted, tmp))


def export_onnx(path: str | Path, model: Network, opset: int = 17) -> Path:
    """An ONNX file with a dynamic batch dimension (input ``images``, output ``logits``)."""
    import warnings

    model = model.eval()
    space = model.space
    example = torch.randn(2, space.in_channels, space.input_size, space.input_size)

    def write(tmp: str) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (example,),
                tmp,
                input_names=["images"],
                output_names=["logits"],
                dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
                opset_version=opset,
                dynamo=False,
            )

    return atomic_write(path, write)


def model_card(
    model: Network,
    metrics: dict[str, Any] | None = None,
    cost: dict[str, float] | None = None,
    predicted_score: float | None = None,
    budgets: dict[str, float] | None = None,
    title: str = "PONAS specialized network",
) -> str:
    """A short Markdown model card: architecture, costs, predicted score, measured accuracy."""
    from ponas.cost import network_cost

    space = model.space
    metrics = dict(metrics or {})
    computed = network_cost(space, model.choices)
    cost = {"macs": computed.macs, "params": computed.params, **(cost or {})}
    lines = [
        f"# {title}",
        "",
        f"Searched with PONAS in the `{space.name}` space ({space.num_layers} layers, "
        f"{len(space.candidates)} candidates per layer); input {space.in_channels}x"
        f"{space.input_size}x{space.input_size}, {space.num_classes} classes.",
        "",
        "## Cost",
        "",
        f"- MACs: {format_count(cost['macs'])}",
        f"- Parameters: {format_count(cost['params'])}",
    ]
    if "latency_ms" in cost:
        lines.append(f"- Predicted latency: {format_cost('latency_ms', cost['latency_ms'])}")
    if budgets:
        shown = ", ".join(f"{k} <= {v:g}" for k, v in budgets.items())
        lines.append(f"- Budgets: {shown}")
    lines += ["", "## Accuracy", ""]
    if predicted_score is not None:
        lines.append(
            f"- Predicted score (sum of table accuracies over layers): {predicted_score:.4f}"
        )
    for key, label in (("top1", "Top-1"), ("top5", "Top-5")):
        if key in metrics:
            lines.append(f"- Measured {label} on the test split: {100 * metrics[key]:.2f}%")
    if "finetune_epochs" in metrics:
        lines.append(
            f"- Fine-tuned for {metrics['finetune_epochs']} epochs after inheriting weights"
        )
    lines += [
        "",
        "## Architecture",
        "",
        "| layer | block | in | out | stride |",
        "|---:|---|---:|---:|---:|",
    ]
    for layer, name in zip(space.layers, model.choices, strict=True):
        lines.append(
            f"| {layer.index} | `{name}` | {layer.in_channels} | {layer.out_channels} | {layer.stride} |"
        )
    lines += [
        "",
        "## Preprocessing",
        "",
        f"Resize to {space.input_size}x{space.input_size}, scale to [0, 1], normalize with "
        f"mean {list(space.mean)} and std {list(space.std)}.",
        "",
    ]
    return "\n".join(lines)


def export_all(
    model: Network,
    out: str | Path,
    formats: tuple[str, ...] | list[str] = FORMATS,
    metrics: dict[str, Any] | None = None,
    cost: dict[str, float] | None = None,
    predicted_score: float | None = None,
    budgets: dict[str, float] | None = None,
) -> dict[str, Path]:
    """Write the requested formats and ``model_card.md`` into ``out``; their paths by format."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown export formats {unknown}; choose from {list(FORMATS)}")
    out = Path(out)
    model = model.cpu().eval()
    written: dict[str, Path] = {}
    for fmt in formats:
        path = out / FILENAMES[fmt]
        if fmt == "pt":
            extra = {"predicted_score": predicted_score, "budgets": dict(budgets or {})}
            written[fmt] = save_bundle(path, model, metrics, cost, extra)
        elif fmt == "torchscript":
            written[fmt] = export_torchscript(path, model)
        else:
            written[fmt] = export_onnx(path, model)
    card = model_card(model, metrics, cost, predicted_score, budgets)
    written["model_card"] = atomic_write_text(out / MODEL_CARD_FILE, card)
    return written


def convert_weights(
    src: str | Path, dst: str | Path, to: str, model: str | None = None
) -> tuple[Network, Path]:
    """Write the weights of ``src`` (a bundle, or a state dict in our layout or the reference's)
    to ``dst`` in layout ``to``: ``"ponas"`` gives a bundle (what ``ponas evaluate`` and
    ``ponas describe`` take), ``"reference"`` a plain state dict that the reference's
    ``test.py`` loads. ``model`` names the network of a plain state dict (see
    :func:`ponas.network.network_for_weights`). Returns ``(network, dst)``.
    """
    if to not in LAYOUTS:
        raise ValueError(f"unknown weights layout {to!r}: expected {' or '.join(LAYOUTS)}")
    try:
        net, _ = load_bundle(src)
    except BundleError:
        net = network_for_weights(src, model)
    if to == "ponas":
        return net, save_bundle(dst, net)
    state = to_layout(net, "reference")
    return net, atomic_write(dst, lambda tmp: torch.save(state, tmp))
