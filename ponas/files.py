"""Writing files so that a reader never sees half of one, and the names of the files ponas
writes (one definition each; the web app and the workers import them from here)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

# what a search writes into its output folder
TABLE_FILE = "table.json"
SUPERNET_FILE = "supernet.pt"
CHECKPOINT_DIR = "checkpoints"
# experiment tracking (ponas.tracking): TensorBoard event files, the MLflow run a search logs to
TENSORBOARD_DIR = "tensorboard"
MLFLOW_RUN_FILE = "mlflow-run.json"

# Export formats of a specialized network and the file each is written to: ``pt`` the
# checkpoint bundle, ``pt2`` a torch.export program, ``onnx`` ONNX (torch's dynamo exporter),
# ``torchscript`` a traced TorchScript module. TorchScript is legacy (deprecated upstream; for
# runtimes that load nothing else): written only when asked for, never by default.
FORMATS = ("pt", "pt2", "onnx", "torchscript")
LEGACY_FORMATS = ("torchscript",)
DEFAULT_FORMATS = tuple(f for f in FORMATS if f not in LEGACY_FORMATS)
FILENAMES = {
    "pt": "model.pt",
    "pt2": "model.pt2",
    "onnx": "model.onnx",
    "torchscript": "model.torchscript.pt",
}
MODEL_CARD_FILE = "model_card.md"


def atomic_write(path: str | Path, write: Callable[[str], object], mode: int = 0o666) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then move it into place.

    A reader sees the old file or the new one, never a partial one; on any error the
    temporary file is removed and ``path`` is untouched. The file is created with mode 0o666
    minus the umask (not tempfile's private 0o600), so a web server can serve it; a secret
    passes ``mode=0o600``, so the file is never readable by others, not even for an instant.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode))
        write(str(tmp))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
