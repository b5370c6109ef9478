"""Checkpoint bundles, torch.export programs, ONNX, TorchScript (legacy) and model cards for a
specialized network.

A bundle (``.pt``) holds everything needed to rebuild and run the network with no other
file: ``{"format": "ponas-bundle/1", "state_dict", "choices", "space" (full spec),
"preprocessing": {"input_size", "mean", "std"}, "metrics", "cost", "versions"}``.
"""

from __future__ import annotations

import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ponas.files import (
    DEFAULT_FORMATS,
    FILENAMES,
    FORMATS,
    MODEL_CARD_FILE,
    atomic_write,
    atomic_write_text,
    load_file,
)
from ponas.network import LAYOUTS, Network, network_for_weights, to_layout
from ponas.space import SearchSpace
from ponas.units import format_budget, format_cost, format_count

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


class ExportError(ValueError):
    """An export format cannot be written here, or its file does not predict what the network
    predicts."""


# exported files must give the network's outputs to within this (float32 logits)
TOLERANCE = 1e-4
# ONNX operator set: 18 is the oldest the dynamo exporter writes, so the widest range of
# runtimes (onnxruntime 1.14 and later) loads the file
ONNX_OPSET = 18
# the packages each format needs beyond torch, and the extra that installs them
_NEEDS = {"onnx": (("onnx", "onnxscript", "onnxruntime"), "onnx")}


def check_formats(formats: tuple[str, ...] | list[str]) -> list[str]:
    """``formats`` in :data:`FORMATS` order, checked before anything is built: an unknown
    name, an empty list or a format whose packages are not installed raises ExportError."""
    from importlib.util import find_spec

    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ExportError(
            f"unknown export format {', '.join(map(repr, unknown))}; "
            f"choose from {', '.join(FORMATS)}"
        )
    if not formats:
        raise ExportError(f"no export format given; choose from {', '.join(FORMATS)}")
    for fmt in formats:
        packages, extra = _NEEDS.get(fmt, ((), ""))
        missing = [name for name in packages if find_spec(name) is None]
        if missing:
            raise ExportError(
                f"the {fmt} format needs {', '.join(missing)} (not installed): "
                f"pip install 'ponas-studio[{extra}]', or leave {fmt} out of the formats"
            )
    return [f for f in FORMATS if f in formats]


def _example(model: Network, batch: int) -> torch.Tensor:
    space = model.space
    generator = torch.Generator().manual_seed(batch)
    shape = (batch, space.in_channels, space.input_size, space.input_size)
    return torch.randn(shape, generator=generator)


def _check_outputs(name: str, got: Any, model: Network, x: torch.Tensor) -> None:
    """Raise ExportError unless ``got`` (an exported file's outputs for ``x``) equals the
    network's outputs to within :data:`TOLERANCE`."""
    with torch.no_grad():
        expected = model(x)
    error = (torch.as_tensor(got) - expected).abs().max().item()
    if not error <= TOLERANCE:
        raise ExportError(
            f"{name}: its outputs differ from PyTorch's by {error:.2g} (at most {TOLERANCE:g} "
            "expected); the file was not written"
        )


def trace(model: Network) -> torch.export.ExportedProgram:
    """The eval-mode network captured by ``torch.export`` with the batch dimension free (height
    and width are the space's input size): what the ``pt2`` and ``onnx`` files are made from."""
    batch = torch.export.Dim("batch", min=1, max=65_536)
    with torch.no_grad():
        return torch.export.export(
            model.eval(), (_example(model, 2),), dynamic_shapes=({0: batch},)
        )


def export_program(
    path: str | Path, model: Network, program: torch.export.ExportedProgram | None = None
) -> Path:
    """A ``torch.export`` program (``.pt2``, from :func:`trace` unless ``program`` is given):
    the network as an ATen graph with its weights, any batch size. Runs without ponas:
    ``torch.export.load(path).module()(images)``; AOTInductor and ExecuTorch compile it for
    servers and devices. Checked before it is written: the program, saved and loaded back,
    predicts what the network predicts."""
    import io

    program = program or trace(model)
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    buffer.seek(0)
    x = _example(model, 3)  # another batch size than the traced one
    with torch.no_grad():
        _check_outputs(Path(path).name, torch.export.load(buffer).module()(x), model, x)
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(buffer.getvalue()))


def export_onnx(
    path: str | Path,
    model: Network,
    program: torch.export.ExportedProgram | None = None,
    opset: int = ONNX_OPSET,
) -> Path:
    """An ONNX file, weights inside, any batch size (input ``images``, output ``logits``),
    written by torch's dynamo-based exporter (``torch.onnx.export(..., dynamo=True)``) from the
    ``torch.export`` program (:func:`trace` unless ``program`` is given). Checked before it is
    moved into place: onnxruntime's outputs equal the network's."""
    import onnxruntime

    model = model.eval()
    onnx_program = torch.onnx.export(
        program or trace(model),
        input_names=["images"],
        output_names=["logits"],
        opset_version=opset,
        dynamo=True,
        verbose=False,
    )

    def write(tmp: str) -> None:
        onnx_program.save(tmp, external_data=False)  # one file: the weights inside the graph
        x = _example(model, 3)
        session = onnxruntime.InferenceSession(tmp, providers=["CPUExecutionProvider"])
        _check_outputs(Path(path).name, session.run(None, {"images": x.numpy()})[0], model, x)

    return atomic_write(path, write)


def export_torchscript(path: str | Path, model: Network) -> Path:
    """A TorchScript file (``torch.jit.trace`` of the eval-mode network) runnable without ponas.

    Legacy: TorchScript is deprecated upstream in favour of ``torch.export`` (format ``pt2``);
    it stays for runtimes that load nothing else (older LibTorch and PyTorch Mobile apps), and
    is written only when asked for."""
    import warnings

    model = model.eval()
    example = _example(model, 1)
    with warnings.catch_warnings():
        # the user asked for this legacy format: its deprecation notice would only repeat that
        warnings.simplefilter("ignore", FutureWarning)
        with torch.no_grad():
            scripted = torch.jit.trace(model, example)
            _check_outputs(Path(path).name, scripted(example), model, example)
        return atomic_write(path, lambda tmp: torch.jit.save(scripted, tmp))


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
        shown = ", ".join(f"{k} <= {format_budget(v)}" for k, v in budgets.items())
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
    formats: tuple[str, ...] | list[str] = DEFAULT_FORMATS,
    metrics: dict[str, Any] | None = None,
    cost: dict[str, float] | None = None,
    predicted_score: float | None = None,
    budgets: dict[str, float] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Path]:
    """Write the requested formats and ``model_card.md`` into ``out``; their paths by format.
    Unknown formats, or formats whose packages are missing, raise ExportError first.

    Every file is read back and its outputs checked against the network's before it counts
    as written (:data:`TOLERANCE`); ``progress(line)`` hears each one as it is done.
    """
    formats = check_formats(formats)
    out = Path(out)
    model = model.cpu().eval()
    say = progress or (lambda line: None)
    written: dict[str, Path] = {}
    # captured once: the pt2 and onnx files are written from the same program
    program = trace(model) if {"pt2", "onnx"} & set(formats) else None
    for fmt in formats:
        path = out / FILENAMES[fmt]
        if fmt == "pt":
            extra = {"predicted_score": predicted_score, "budgets": dict(budgets or {})}
            written[fmt] = save_bundle(path, model, metrics, cost, extra)
            x = _example(model, 2)
            try:
                with torch.no_grad():
                    _check_outputs(path.name, load_bundle(path)[0].eval()(x), model, x)
            except ExportError:
                path.unlink()
                raise
        elif fmt == "pt2":
            written[fmt] = export_program(path, model, program)
        elif fmt == "onnx":
            written[fmt] = export_onnx(path, model, program)
        else:
            written[fmt] = export_torchscript(path, model)
        say(f"wrote {fmt}: {written[fmt]} (checked: its outputs match the network's)")
    card = model_card(model, metrics, cost, predicted_score, budgets)
    written["model_card"] = atomic_write_text(out / MODEL_CARD_FILE, card)
    say(f"wrote the model card: {written['model_card']}")
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
