"""A run's TensorBoard event files (written by its workers through ``ponas.tracking``), as
one zip archive to download."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from ponas.files import TENSORBOARD_DIR
from webapp.runs.models import SearchRun


def event_files(run: SearchRun) -> list[Path]:
    """The run's event files (its search's, and one folder per deployment), oldest first.

    Only plain files inside the run's own folder: a link planted in the artifact store is
    not followed."""
    root = run.out_dir / TENSORBOARD_DIR
    if not root.is_dir() or root.is_symlink():
        return []
    inside = root.resolve()
    files = [
        p
        for p in root.rglob("events.out.tfevents.*")
        if p.is_file() and not p.is_symlink() and p.resolve().is_relative_to(inside)
    ]
    return sorted(files, key=lambda p: (p.stat().st_mtime, p.as_posix()))


def events_archive(run: SearchRun) -> io.BytesIO | None:
    """A zip of the run's event files under ``run-<id>-tensorboard/`` (``tensorboard --logdir``
    reads the unpacked folder), or None when the run has none yet."""
    files = event_files(run)
    if not files:
        return None
    root, top = run.out_dir / TENSORBOARD_DIR, f"run-{run.pk}-tensorboard"
    buffer = io.BytesIO()
    # event files are protobuf records of floats: they compress well
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for i, path in enumerate(files):
            folder = path.parent.relative_to(root).as_posix()
            archive.write(path, f"{top}/{'' if folder == '.' else folder + '/'}{_name(path, i)}")
    buffer.seek(0)
    return buffer


def _name(path: Path, index: int) -> str:
    """The file's name in the archive: ``events.out.tfevents.<time>.<host>.<pid>.<n>`` loses
    the worker's host and process (what users read never names a server), keeps its time
    first (TensorBoard reads a folder's files in name order) and gains a unique index."""
    stamp = path.name.split(".")[3] if path.name.count(".") >= 3 else ""
    if not stamp.isdigit():
        stamp = str(int(path.stat().st_mtime))
    return f"events.out.tfevents.{stamp}.ponas.{index:04d}"
