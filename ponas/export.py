"""A specialized network written for deployment, every file checked: the checkpoint bundle
(``.pt``), the ``torch.export`` program (``.pt2``), ONNX, TorchScript (legacy) and the model
card, into one folder (:func:`export_all`).

Bundles live in :mod:`ponas.network.bundle`, the model card in :mod:`ponas.model_card`, weight
layout conversion in :mod:`ponas.network.convert`; their names are re-exported here, where
callers have always imported them from.
"""

from __future__ import annotations

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
)
from ponas.model_card import model_card
from ponas.network.bundle import (
    BUNDLE_FORMAT,
    BundleError,
    is_bundle,
    load_bundle,
    read_bundle,
    save_bundle,
    versions,
)
from ponas.network.convert import convert_weights
from ponas.network.model import Network

__all__ = [
    "BUNDLE_FORMAT",
    "ONNX_OPSET",
    "TOLERANCE",
    "BundleError",
    "ExportError",
    "check_formats",
    "convert_weights",
    "export_all",
    "export_onnx",
    "export_program",
    "export_torchscript",
    "is_bundle",
    "load_bundle",
    "model_card",
    "read_bundle",
    "save_bundle",
    "trace",
    "versions",
]


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
