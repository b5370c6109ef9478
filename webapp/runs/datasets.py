"""Datasets by name: the bundled ones, and the ones an admin registered (:class:`Dataset`).

Web and API users name a dataset; the workers get its kind and folder from here. A user never
gives a server path, and what users read of a run (its error, its table's meta) names the
dataset, never its folder or a worker's host.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet

from ponas.catalog import BUILTIN_DATASETS, SHAPES_TEST, SHAPES_TRAIN
from ponas.space import load_space
from webapp.runs.models import Dataset

# ponas's datasets that need no folder (bundled with the code or generated in memory).
BUNDLED = BUILTIN_DATASETS


def check_registration(name: str, root: str) -> Path:
    """The registered folder, resolved; ValidationError unless it lies under a
    ``PONAS_DATA_ROOTS`` folder and the name is not a bundled dataset's."""
    if name in BUNDLED:
        raise ValidationError({"name": f'"{name}" is a bundled dataset: choose another name'})
    roots = [Path(r).resolve() for r in settings.PONAS_DATA_ROOTS]
    path = Path(root).expanduser().resolve()
    if not any(path.is_relative_to(r) for r in roots):
        allowed = ", ".join(map(str, roots)) or "none: set PONAS_DATA_ROOTS"
        raise ValidationError(
            {"root": f"{root} is not under a data root (PONAS_DATA_ROOTS: {allowed})"}
        )
    return path


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


# An absolute path of at least two parts (``/a/b``), as error texts quote them.
_PATH = re.compile(r"(?<![\w.\"])/(?:[^\s/'\"`:,;()<>\[\]]+/)+[^\s'\"`:,;()<>\[\]]*")


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
    for old, new in sorted(replacements, key=lambda r: -len(r[0])):
        # Whole names only: a worker host "test" must not turn "test_batch" into something else.
        text = re.sub(rf"(?<![\w.-]){re.escape(old)}(?![\w-])", new, text)
    return _PATH.sub("(a server path)", text)


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
