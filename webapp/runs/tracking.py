"""A run's TensorBoard event files (written by its workers through ``ponas.tracking``), as
one zip archive to download, streamed as it is made."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
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


class _Pipe(io.RawIOBase):
    """A write-only, unseekable file that keeps what is written until :meth:`take`: what
    ``zipfile`` writes to it goes to the client chunk by chunk (``zipfile`` writes data
    descriptors where it cannot seek)."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.chunks.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data = b"".join(self.chunks)
        self.chunks.clear()
        return data


# Bytes read from an event file at a time: the most the web process holds of an archive.
CHUNK = 256 * 1024


def events_archive(run: SearchRun) -> Iterator[bytes] | None:
    """A zip of the run's event files under ``run-<id>-tensorboard/`` (``tensorboard --logdir``
    reads the unpacked folder), made while it is sent: chunks of bytes, never the whole
    archive in memory. None when the run has no event files yet. A file a worker still
    appends to is archived as it was when listed; one removed meanwhile is left out."""
    files = event_files(run)
    if not files:
        return None
    root, top = run.out_dir / TENSORBOARD_DIR, f"run-{run.pk}-tensorboard"

    def chunks() -> Iterator[bytes]:
        pipe = _Pipe()
        # event files are protobuf records of floats: they compress well
        with zipfile.ZipFile(pipe, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for i, path in enumerate(files):
                folder = path.parent.relative_to(root).as_posix()
                name = f"{top}/{'' if folder == '.' else folder + '/'}{_name(path, i)}"
                try:
                    source = path.open("rb")
                    info = zipfile.ZipInfo.from_file(path, name)
                except OSError:
                    continue
                info.compress_type = zipfile.ZIP_DEFLATED
                left = info.file_size
                with source, archive.open(info, "w") as entry:
                    while left > 0 and (block := source.read(min(CHUNK, left))):
                        entry.write(block)
                        left -= len(block)
                        yield pipe.take()
                yield pipe.take()
        yield pipe.take()

    return chunks()


def _name(path: Path, index: int) -> str:
    """The file's name in the archive: ``events.out.tfevents.<time>.<host>.<pid>.<n>`` loses
    the worker's host and process (what users read never names a server), keeps its time
    first (TensorBoard reads a folder's files in name order) and gains a unique index."""
    stamp = path.name.split(".")[3] if path.name.count(".") >= 3 else ""
    if not stamp.isdigit():
        stamp = str(int(path.stat().st_mtime))
    return f"events.out.tfevents.{stamp}.ponas.{index:04d}"
