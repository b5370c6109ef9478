"""Registered datasets: the row an admin adds (a name, a kind, a folder on the workers, who
may use it) and the check a registration passes. Choosing one by name, and what a worker gets
for it, is :mod:`webapp.runs.datasets`."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from ponas.catalog import BUILTIN_DATASETS

# ponas's datasets that need no folder (bundled with the code or generated in memory).
BUNDLED = BUILTIN_DATASETS


def data_roots() -> list[Path]:
    """The folders registered datasets must lie under (``PONAS_DATA_ROOTS``), resolved."""
    return [Path(r).resolve() for r in settings.PONAS_DATA_ROOTS]


def check_registration(name: str, root: str) -> Path:
    """The registered folder, resolved (links followed now, once: the resolved path is what
    is stored and handed to workers); ValidationError unless it lies under a
    ``PONAS_DATA_ROOTS`` folder and the name is not a bundled dataset's."""
    if name in BUNDLED:
        raise ValidationError({"name": f'"{name}" is a bundled dataset: choose another name'})
    roots = data_roots()
    path = Path(root).expanduser().resolve()
    if not any(path.is_relative_to(r) for r in roots):
        allowed = ", ".join(map(str, roots)) or "none: set PONAS_DATA_ROOTS"
        raise ValidationError(
            {"root": f"{root} is not under a data root (PONAS_DATA_ROOTS: {allowed})"}
        )
    return path


class Dataset(models.Model):
    """A dataset an admin registered: web and API users choose it by name and never see its
    folder. The bundled datasets (``BUNDLED``) need no registration."""

    class Kind(models.TextChoices):
        CIFAR10 = "cifar10", "cifar10: the folder of the CIFAR-10 python batches"
        IMAGEFOLDER = "imagefolder", "imagefolder: train/ and val/ (or test/) class folders"

    name = models.SlugField(
        max_length=64, unique=True, help_text="what users choose (config.dataset)"
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    root = models.CharField(
        max_length=1000, help_text="the folder on the workers; under a PONAS_DATA_ROOTS folder"
    )
    description = models.CharField(max_length=200, blank=True)
    everyone = models.BooleanField(default=False, help_text="every signed-in user may use it")
    users = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="datasets", help_text="may use it"
    )
    groups = models.ManyToManyField(
        "auth.Group", blank=True, related_name="datasets", help_text="their members may use it"
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        # stored resolved: a link re-pointed later does not move the dataset (datasets.py)
        self.root = str(check_registration(self.name, self.root))
