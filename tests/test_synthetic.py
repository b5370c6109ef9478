"""The built-in `shapes` dataset: generated in memory, seeded, balanced, quick to make."""

import time

import numpy as np
import torch

from ponas.data import DATASETS, load_dataset
from ponas.space import load_space
from ponas.synthetic import SHAPES_CLASSES, generate_shapes


def shapes(seed: int = 0):
    space = load_space("shapes")
    return load_dataset(
        "shapes", input_size=16, mean=space.mean, std=space.std, val_size=1000, seed=seed
    )


def test_shapes_is_a_registered_dataset_with_a_preset():
    assert "shapes" in DATASETS
    space = load_space("shapes")
    assert space.dataset == "shapes" and space.in_channels == 1 and space.num_classes == 10


def test_the_same_seed_gives_the_same_images_and_others_differ():
    x1, y1 = generate_shapes(200, seed=3)
    x2, y2 = generate_shapes(200, seed=3)
    x3, _ = generate_shapes(200, seed=4)
    assert x1.shape == (200, 16, 16) and x1.dtype == np.float32
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    assert not np.array_equal(x1, x3)
    assert 0.0 <= x1.min() and x1.max() <= 1.0


def test_every_class_appears_equally_often():
    _, labels = generate_shapes(1000, seed=0)
    assert np.bincount(labels, minlength=len(SHAPES_CLASSES)).tolist() == [100] * 10


def test_splits_have_thousands_of_test_images_and_only_the_validation_split_moves_with_the_seed():
    a, b = shapes(seed=0), shapes(seed=1)
    assert (len(a.train), len(a.val), len(a.test)) == (9000, 1000, 4000)
    assert set(a.train.indices.tolist()).isdisjoint(a.val.indices.tolist())
    assert set(a.val.indices.tolist()) != set(b.val.indices.tolist())
    xa, ya = a.test.get_batch(torch.arange(8))
    xb, yb = b.test.get_batch(torch.arange(8))
    assert xa.shape == (8, 1, 16, 16) and torch.equal(xa, xb) and torch.equal(ya, yb)
    assert a.classes == SHAPES_CLASSES and a.num_classes == 10


def test_the_whole_dataset_is_made_in_a_few_seconds():
    start = time.perf_counter()
    shapes()
    assert time.perf_counter() - start < 10  # about 1 s on an idle core
