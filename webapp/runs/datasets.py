"""Datasets by name: the bundled ones, and the ones an admin registered (:class:`Dataset`).

Web and API users name a dataset; the workers get its kind and folder from here. A user never
gives a server path, and what users read of a run (its error, its table's meta) names the
dataset, never its folder or a worker's host.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import Q, QuerySet

from ponas.catalog import SHAPES_TEST, SHAPES_TRAIN
from ponas.search.config import ConfigError
from ponas.space import load_space
from webapp.runs.models import Dataset
from webapp.runs.models.dataset import BUNDLED, data_roots
from webapp.runs.models.dataset import check_registration as check_registration  # its old home


class DatasetMoved(ConfigError):
    """A registered dataset's folder is not where it was registered any more (a link on its
    path re-pointed, a link inside it leading out of the data roots): the run is refused."""


def check_folder(dataset: Dataset) -> None:
    """Raise :class:`DatasetMoved` unless ``dataset``'s folder, on this machine (a worker as a
    run starts, or the web server), is still the one registered: its stored (resolved) path
    resolves to itself under a data root, and no link among its splits and their class
    folders (``train/cat``) leads out of it. A folder this machine does not have passes (the
    data loader says it is missing); the data roots are checked where ``PONAS_DATA_ROOTS``
    is set (a worker without it checks the folder only)."""
    root = Path(dataset.root)
    where = f'dataset "{dataset.name}"'
    again = "an admin registers it again (manage.py register_dataset) to use a new folder"
    resolved, roots = root.resolve(), data_roots()
    if resolved != root or (roots and not any(resolved.is_relative_to(r) for r in roots)):
        raise DatasetMoved(
            f"{where}: its folder is no longer the one registered (a link on its path was "
            f"changed, or PONAS_DATA_ROOTS no longer holds it); {again}"
        )
    for entry in _links_in(root, depth=2):
        if not Path(entry).resolve().is_relative_to(resolved):
            inside = Path(entry).relative_to(root).as_posix()
            raise DatasetMoved(
                f"{where}: {inside[:200]} inside its folder is a link that leads out of it; "
                f"links inside a registered folder must stay inside it; {again}"
            )


def _links_in(folder: Path, depth: int) -> Iterator[str]:
    """The symbolic links among ``folder``'s entries and, ``depth`` levels down, those of
    its sub-folders (the links themselves are not followed)."""
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_symlink():
                    yield entry.path
                elif depth > 1 and entry.is_dir(follow_symlinks=False):
                    yield from _links_in(Path(entry.path), depth - 1)
    except OSError:  # missing or unreadable here: the loader reports it
        return


def usable_by(user) -> QuerySet[Dataset]:
    """The registered datasets ``user`` may use: shared with everyone, with them, or with one
    of their groups."""
    if user is None or not user.is_authenticated:
        return Dataset.objects.none()
    return Dataset.objects.filter(
        Q(everyone=True) | Q(users=user) | Q(groups__in=user.groups.all())
    ).distinct()


def names_for(user) -> list[str]:
    """Every dataset name ``user`` may choose: the bundled ones, then the registered ones."""
    return [*BUNDLED, *usable_by(user).values_list("name", flat=True)]


def chosen_name(preset: str, config: dict[str, Any]) -> str:
    """The dataset a run reads: its ``dataset`` setting, else its preset's."""
    return str(config.get("dataset") or load_space(preset).dataset)


def refusal(user, preset: str, config: dict[str, Any]) -> str | None:
    """Why ``user`` may not run ``preset`` with ``config``'s dataset, or None."""
    if "dataset_dir" in config:
        return (
            "dataset_dir: server folders are not chosen through the web or the API; choose a "
            f"dataset by name (available to you: {', '.join(names_for(user))})"
        )
    name = chosen_name(preset, config)
    if name in BUNDLED or usable_by(user).filter(name=name).exists():
        return None
    return (
        f'dataset: "{name:.64}" is not a dataset available to you (an admin registers '
        f"datasets); available: {', '.join(names_for(user))}"
    )


def search_settings(preset: str, config: dict[str, Any]) -> dict[str, Any]:
    """The settings ponas gets for a run: a registered dataset's name becomes its kind and
    folder. Bundled datasets, and runs that name a folder themselves (made before datasets
    were registered), pass through."""
    name = chosen_name(preset, config)
    if name in BUNDLED or "dataset_dir" in config:
        return dict(config)
    dataset = Dataset.objects.filter(name=name).first()
    if dataset is None:
        raise ValueError(f'dataset "{name}" is not registered (any more)')
    check_folder(dataset)  # where a worker runs it: its folder as registered, or refused
    return {**config, "dataset": dataset.kind, "dataset_dir": dataset.root}


def data_memory_mb(preset: str, config: dict[str, Any], input_size: int) -> float | None:
    """The memory the images of an in-memory dataset take at ``input_size`` (float32), or
    None for datasets read from disk batch by batch. The built-in sets are held upscaled."""
    count = _builtin_images().get(chosen_name(preset, config))
    return None if count is None else count * input_size * input_size * 4 / 2**20


@cache
def _builtin_images() -> dict[str, int]:
    """Images (single-channel) of each built-in dataset, train and test together."""
    from sklearn.datasets import load_digits

    return {"digits": len(load_digits().images), "shapes": SHAPES_TRAIN + SHAPES_TEST}


# What an error text may quote of a server path, and how it is found: a quoted absolute path
# (spaces and all: Python quotes the paths in its errors), or an unquoted one of at least two
# parts (``/a/b``) with the words after it that go on with a slash (``/data/my set/x/1.png``).
# Right after a name put in for a known folder (\x00) the rest of the path is the user's own.
_END = r"\s'\"`:,;()<>\[\]\x00"
_QUOTED_PATH = re.compile(r"(['\"`])/[^'\"`\n/\x00]+/[^'\"`\n\x00]*(?=\1)")
_PATH = re.compile(rf"(?<![\w.\x00])/(?:[^/{_END}]+/)+[^{_END}]*(?: [^{_END}]*/[^{_END}]*)*")


def public_text(text: str, run, worker: str = "") -> str:
    """``text`` (a run's or a build's error) as its user may read it: the dataset's folder
    named by the dataset, the artifact store and other server paths and the worker's host
    left out."""
    if not text:
        return text
    name = chosen_name(run.preset, run.config) if run.preset else ""
    dataset = Dataset.objects.filter(name=name).first() if name not in BUNDLED else None
    replacements = []
    if dataset is not None:
        for root in {dataset.root.rstrip("/"), str(Path(dataset.root).expanduser().resolve())}:
            replacements.append((root, f'dataset "{dataset.name}"'))
    for store in {str(settings.MEDIA_ROOT).rstrip("/"), str(Path(settings.MEDIA_ROOT).resolve())}:
        replacements.append((store, "the artifact store"))
    for host in {worker, worker.partition("@")[2]} - {""}:
        replacements.append((host, "the worker"))
    text = text.replace("\x00", "")
    names: list[str] = []
    for old, new in sorted(replacements, key=lambda r: -len(r[0])):
        # Whole names only: a worker host "test" must not turn "test_batch" into something else.
        # Each becomes a marker first, so the path scrubbers below leave what follows it.
        marker = f"\x00{len(names)}\x00"
        names.append(new)
        text = re.sub(rf"(?<![\w.-]){re.escape(old)}(?![\w-])", marker, text)
    text = _QUOTED_PATH.sub(lambda m: m[1] + "(a server path)", text)
    text = _PATH.sub("(a server path)", text)
    return re.sub(r"\x00(\d+)\x00", lambda m: names[int(m[1])], text)


def public_meta(run, meta: dict[str, Any]) -> dict[str, Any]:
    """A table's meta as users read it: a registered dataset by its name, not its folder
    (a bundled dataset's meta has no folder: it is left as it is)."""
    name = chosen_name(run.preset, run.config)
    if name in BUNDLED or "dataset_dir" in run.config:
        return meta
    meta = dict(meta)
    meta["dataset"] = name
    if isinstance(meta.get("config"), dict):
        meta["config"] = {**meta["config"], "dataset": name}
        meta["config"].pop("dataset_dir", None)
    return meta
