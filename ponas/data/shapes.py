"""``shapes``: a built-in dataset where architectures differ, generated in memory.

Digits is too easy to tell networks apart (every network of its space scores 97-99% on 359
test images). ``shapes`` is made of 16x16 grey images of ten small outlined or filled shapes
(disk, ring, square, square outline, triangle, triangle outline, plus, X, two bars, two dots),
each jittered in position, size, rotation, stroke width, contrast and polarity, with two
distractor strokes and pixel noise on top. Telling a ring from a disk or a square outline from
a triangle outline at this size, through the clutter, is what separates a small network from
a large one.

Every image is drawn from a signed distance function evaluated on the pixel grid, for the
whole set at once (numpy, no per-image Python): 14,000 images take well under a second. The
images never depend on the search seed, only the validation split does, like digits: the test
split (4,000 images) is the same for every run.
"""

from __future__ import annotations

import numpy as np
import torch

from ponas.catalog import SHAPES_TEST, SHAPES_TRAIN
from ponas.data.splits import DataSplits
from ponas.data.tensor import TensorImageDataset, holdout_splits
from ponas.data.transforms import InputSpec, RandomCropFlip

__all__ = ["SHAPES_CLASSES", "generate_shapes", "load_shapes"]

SHAPES_CLASSES = (
    "disk",
    "ring",
    "square",
    "square outline",
    "triangle",
    "triangle outline",
    "plus",
    "x",
    "two bars",
    "two dots",
)
SHAPES_SIZE = 16  # generated at the digits space's input size; other sizes are resized
# The images are fixed: the same seed for every run, another for the test split.
SHAPES_SEED = 20240518
SHAPES_TEST_SEED = 12345


def _triangle(x: np.ndarray, y: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Distance-like field of an upright equilateral triangle of inradius ``r / 2``."""
    d = y  # bottom edge (image y grows downwards)
    for angle in (7 * np.pi / 6, -np.pi / 6):  # the two slanted edges, outward normals
        d = np.maximum(d, x * np.cos(angle) + y * np.sin(angle))
    return d - r / 2


def _plus(x: np.ndarray, y: np.ndarray, r: np.ndarray, w: np.ndarray) -> np.ndarray:
    ax, ay = np.abs(x), np.abs(y)
    return np.minimum(np.maximum(ax - w, ay - r), np.maximum(ay - w, ax - r))


def _segment(px, py, ax, ay, bx, by) -> np.ndarray:
    """Distance from points ``(px, py)`` to the segments ``a``-``b`` (broadcast)."""
    dx, dy = bx - ax, by - ay
    t = np.clip(((px - ax) * dx + (py - ay) * dy) / np.maximum(dx * dx + dy * dy, 1e-6), 0, 1)
    return np.hypot(px - ax - t * dx, py - ay - t * dy)


def _fields(cls: np.ndarray, x: np.ndarray, y: np.ndarray, r, w) -> np.ndarray:
    """The signed distance (pixels, negative inside) of each image's shape."""
    rho = np.hypot(x, y)
    box = np.maximum(np.abs(x), np.abs(y)) - 0.8 * r
    tri = _triangle(x, y, r)
    s = np.sqrt(0.5)
    fields = [
        rho - r,
        np.abs(rho - r) - w,
        box,
        np.abs(box) - w,
        tri,
        np.abs(tri) - w,
        _plus(x, y, r, w),
        _plus(s * (x - y), s * (x + y), r, w),
        np.maximum(np.abs(x) - r, np.abs(np.abs(y) - 0.5 * r) - w),
        np.minimum(np.hypot(x - 0.6 * r, y), np.hypot(x + 0.6 * r, y)) - 0.4 * r,
    ]
    return np.choose(cls[:, None, None], fields)


def generate_shapes(n: int, seed: int, size: int = SHAPES_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images ``(n, size, size)`` float32 in [0, 1] and their labels, balanced and
    shuffled; the same ``(n, seed)`` always gives the same images."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % len(SHAPES_CLASSES))

    def u(lo: float, hi: float) -> np.ndarray:
        return rng.uniform(lo, hi, (n, 1, 1)).astype(np.float32)

    scale = size / 16
    cx, cy = u(6, 10) * scale, u(6, 10) * scale
    r, w = u(2.5, 4.5) * scale, u(0.4, 0.8) * scale
    theta = u(-0.4, 0.4)
    grid = (np.arange(size, dtype=np.float32) + 0.5)[None]
    gx, gy = grid[:, None, :] - cx, grid[:, :, None] - cy
    x = np.cos(theta) * gx + np.sin(theta) * gy
    y = -np.sin(theta) * gx + np.cos(theta) * gy
    shape = np.clip(0.5 - _fields(labels, x, y, r, w), 0, 1)  # one-pixel anti-aliased edge
    clutter = np.zeros_like(shape)
    for _ in range(3):  # distractor strokes, fainter than the shape on average
        ends = [u(0, 16) * scale for _ in range(4)]
        stroke = np.clip(0.5 - (_segment(grid[:, None, :], grid[:, :, None], *ends) - 0.4), 0, 1)
        clutter = np.maximum(clutter, stroke * u(0.2, 0.7))
    contrast, background = u(0.3, 1.0), u(0.0, 0.3)
    image = background + contrast * np.maximum(shape, clutter)
    flip = rng.random((n, 1, 1)) < 0.5  # polarity: dark shapes on light ground too
    image = np.where(flip, 1 - image, image)
    image = image + rng.normal(0, 1, image.shape).astype(np.float32) * u(0.1, 0.3)
    return np.clip(image, 0, 1).astype(np.float32), labels.astype(np.int64)


def load_shapes(spec: InputSpec, val_size: int | float, seed: int) -> DataSplits:
    """The ``shapes`` splits: 10,000 training images (validation held out by ``seed``) and
    4,000 test images, all generated here; what :func:`ponas.data.load_dataset` returns."""
    train_x, train_y = generate_shapes(SHAPES_TRAIN, SHAPES_SEED)
    test_x, test_y = generate_shapes(SHAPES_TEST, SHAPES_TEST_SEED)
    common = dict(**spec.normalization(), classes=SHAPES_CLASSES)
    return holdout_splits(
        TensorImageDataset(
            torch.from_numpy(train_x).unsqueeze(1), torch.from_numpy(train_y), **common
        ),
        TensorImageDataset(
            torch.from_numpy(test_x).unsqueeze(1), torch.from_numpy(test_y), **common
        ),
        val_size=val_size,
        seed=seed,
        augment=RandomCropFlip(padding=1, flip=False),  # one-pixel shifts; flips change triangles
        where="shapes",
    )
