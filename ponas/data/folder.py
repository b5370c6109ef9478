"""``imagefolder``: ImageNet-style folders (``train/`` and ``val/`` or ``test/``, one subfolder
per class), decoded per item by torchvision with the reference's transforms."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from ponas.catalog import val_count
from ponas.data.errors import DatasetError, one_line
from ponas.data.splits import DataSplits, split
from ponas.data.transforms import InputSpec, image_eval_transform, image_train_transform

__all__ = ["ImageFolderSplit", "load_imagefolder", "load_imagefolder_test"]

_EXPECTED = "expected train/ and val/ or test/ (ImageNet-style class subfolders)"


def _load_image(path: str, mode: str) -> Any:
    """Open an image as PIL in ``mode`` ("RGB" or "L"); module-level so workers can pickle it."""
    from PIL import Image

    with open(path, "rb") as f:
        img = Image.open(f)
        return img.convert(mode)


class ImageFolderSplit(Dataset):
    """A subset of a torchvision ``ImageFolder`` with its own transform.

    Items may be requested as ``i`` or ``(i, seed)``; with a seed, the random transforms draw
    from torch's RNG seeded with it (restored afterwards), which :class:`BatchLoader` uses to
    make augmentation reproducible in any worker.
    """

    accepts_item_seeds = True

    def __init__(self, folder: Any, indices: Sequence[int] | None, transform: Callable) -> None:
        self.folder = folder
        self.indices = list(range(len(folder.samples))) if indices is None else list(indices)
        self.transform = transform
        self.classes = tuple(folder.classes)

    def __len__(self) -> int:
        return len(self.indices)

    def __repr__(self) -> str:
        return f"ImageFolderSplit({self.folder.root!r}, n={len(self)})"

    @property
    def targets(self) -> Tensor:
        """Labels of this split, in order (int64)."""
        return torch.tensor([self.folder.samples[i][1] for i in self.indices], dtype=torch.long)

    def subset(self, positions: Tensor) -> ImageFolderSplit:
        """The examples at ``positions`` with the same transform (see :func:`subset`)."""
        return ImageFolderSplit(
            self.folder, [self.indices[i] for i in positions.tolist()], self.transform
        )

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[Tensor, int]:
        i, seed = item if isinstance(item, tuple) else (item, None)
        path, target = self.folder.samples[self.indices[i]]
        try:
            img = self.folder.loader(path)
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{path}: cannot read the image ({one_line(exc)})") from None
        if seed is None:
            return self.transform(img), target
        # The CPU generator alone, saved and restored around the transform: what
        # ``fork_rng`` + ``torch.manual_seed`` do for the transforms (they draw on the CPU), at a
        # fiftieth of the cost (manual_seed also seeds every accelerator's generators).
        generator = torch.default_generator
        state = generator.get_state()
        generator.manual_seed(seed)
        try:
            return self.transform(img), target
        finally:
            generator.set_state(state)


def _image_folder(path: Path, mode: str) -> Any:
    from torchvision.datasets import ImageFolder  # lazy: torchvision is slow to import

    if not path.is_dir():
        raise DatasetError(
            f"{path}: no such folder; expected ImageNet-style class subfolders of images"
        )
    try:
        return ImageFolder(str(path), loader=partial(_load_image, mode=mode))
    except (FileNotFoundError, OSError) as exc:
        raise DatasetError(
            f"{path}: {one_line(exc)}; expected ImageNet-style class subfolders of images"
        ) from None


def _image_mode(root: Path, mean: tuple[float, ...]) -> str:
    """PIL's mode for images normalized with ``mean``: RGB or greyscale."""
    if len(mean) not in (1, 3):
        raise DatasetError(
            f"{root}: mean/std have {len(mean)} values; expected 3 (RGB) or 1 (greyscale)"
        )
    return "RGB" if len(mean) == 3 else "L"


def _test_dir(root: Path) -> Path | None:
    """The folder the test split comes from: ``val/``, else ``test/`` (the folder the
    reference's ``test.py`` reads)."""
    return next((root / d for d in ("val", "test") if (root / d).is_dir()), None)


def load_imagefolder(root: Path, spec: InputSpec, val_size: int | float, seed: int) -> DataSplits:
    """The splits of the image folder ``root``: validation held out of ``train/`` by ``seed``,
    the test split from ``val/`` (else ``test/``)."""
    if not root.is_dir():
        raise DatasetError(
            f"{root}: no such folder; expected a folder with train/ and val/ or test/"
        )
    if not (root / "train").is_dir():
        raise DatasetError(f"{root}: no train/ folder; {_EXPECTED}")
    test_dir = _test_dir(root)
    if test_dir is None:
        raise DatasetError(f"{root}: no val/ or test/ folder; {_EXPECTED}")
    mode = _image_mode(root, spec.mean)
    train_folder = _image_folder(root / "train", mode)
    test_folder = _image_folder(test_dir, mode)
    if train_folder.classes != test_folder.classes:
        only_train = sorted(set(train_folder.classes) - set(test_folder.classes))
        only_test = sorted(set(test_folder.classes) - set(train_folder.classes))
        raise DatasetError(
            f"{root}: the class folders of train/ and {test_dir.name}/ differ (only in train: "
            f"{only_train}, only in {test_dir.name}: {only_test}); expected the same classes"
        )
    train_tf = image_train_transform(spec)
    eval_tf = image_eval_transform(spec)
    k = val_count(val_size, len(train_folder.samples), str(root / "train"))
    train_idx, val_idx = split(len(train_folder.samples), k, seed)
    train_idx, val_idx = train_idx.tolist(), val_idx.tolist()
    return DataSplits(
        train=ImageFolderSplit(train_folder, train_idx, train_tf),
        val=ImageFolderSplit(train_folder, val_idx, eval_tf),
        test=ImageFolderSplit(test_folder, None, eval_tf),
        num_classes=len(train_folder.classes),
        in_channels=len(spec.mean),
        input_size=spec.input_size,
        train_eval=ImageFolderSplit(train_folder, train_idx, eval_tf),
        classes=tuple(train_folder.classes),
    )


def load_imagefolder_test(root: Path, spec: InputSpec) -> tuple[ImageFolderSplit, int]:
    """Only what evaluation reads: ``(test split, number of classes)`` of ``root``'s ``val/``
    (else ``test/``); no ``train/`` needed."""
    test_dir = _test_dir(root)
    if test_dir is None:
        raise DatasetError(
            f"{root}: no val/ or test/ folder; expected a folder with val/ or test/ "
            "(ImageNet-style class subfolders)"
        )
    folder = _image_folder(test_dir, _image_mode(root, spec.mean))
    transform = image_eval_transform(spec)
    return ImageFolderSplit(folder, None, transform), len(folder.classes)
