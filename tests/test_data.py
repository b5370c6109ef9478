"""Tests of ponas.data: the three datasets, their splits, and the deterministic loaders."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ponas.data import (
    DatasetError,
    DataSplits,
    RandomCropFlip,
    TensorImageDataset,
    load_dataset,
    make_loader,
)

MEAN1, STD1 = [0.5], [0.5]
MEAN3, STD3 = [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]


def digits(seed: int = 0, val_size: int | float = 300, input_size: int = 16, **kw) -> DataSplits:
    kw.setdefault("mean", MEAN1)
    kw.setdefault("std", STD1)
    return load_dataset("digits", input_size=input_size, val_size=val_size, seed=seed, **kw)


def ids(ds: TensorImageDataset) -> set[int]:
    """The base-tensor rows a view covers (its identity as a set of examples)."""
    return set(ds.indices.tolist())


def unnormalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    m = torch.tensor(mean).view(-1, 1, 1)
    s = torch.tensor(std).view(-1, 1, 1)
    return x * s + m


def crops_matching(aug: torch.Tensor, img: torch.Tensor, pad: int, flips: bool) -> list:
    """The (dy, dx, flipped) crops of ``img`` zero-padded by ``pad`` that equal ``aug``."""
    h, w = img.shape[-2:]
    padded = F.pad(img, (pad, pad, pad, pad))
    found = []
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            crop = padded[:, dy : dy + h, dx : dx + w]
            for flipped in (False, True) if flips else (False,):
                c = crop.flip(-1) if flipped else crop
                if torch.allclose(aug, c, atol=1e-5):
                    found.append((dy, dx, flipped))
    return found


def test_random_crop_flip_draws_independent_offsets_and_flips():
    x = torch.rand(200, 2, 5, 6)
    aug = RandomCropFlip(padding=2, flip=True)(x, torch.Generator().manual_seed(0))
    assert aug.shape == x.shape
    picks = []
    for a, img in zip(aug, x, strict=True):
        found = crops_matching(a, img, pad=2, flips=True)
        assert len(found) == 1  # random pixels: exactly one crop fits, same for all channels
        picks.append(found[0])
    dys, dxs, flipped = zip(*picks, strict=True)
    assert set(dys) == set(dxs) == set(range(5))
    assert any(dy != dx for dy, dx, _ in picks)  # rows and columns drawn independently
    assert 60 < sum(flipped) < 140
    unflipped = RandomCropFlip(padding=0, flip=False)(x, torch.Generator().manual_seed(0))
    assert torch.equal(unflipped, x)


# ---------------------------------------------------------------------------------- digits


def test_digits_shapes_dtypes_and_sizes():
    s = digits()
    assert (s.num_classes, s.in_channels, s.input_size) == (10, 1, 16)
    assert len(s.test) == 359  # 20% of 1797
    assert len(s.val) == 300
    assert len(s.train) == len(s.train_eval) == 1797 - 359 - 300
    x, y = next(iter(make_loader(s.train, 32, shuffle=True)))
    assert x.shape == (32, 1, 16, 16) and x.dtype == torch.float32
    assert y.shape == (32,) and y.dtype == torch.int64
    x, y = s.test[0]
    assert x.shape == (1, 16, 16) and y.dtype == torch.int64
    # mean 0.5 / std 0.5 maps [0, 1] onto [-1, 1]
    x, _ = next(iter(make_loader(s.train_eval, 2000, shuffle=False)))
    assert x.min().item() == pytest.approx(-1.0) and x.max().item() == pytest.approx(1.0)


def test_digits_eval_images_are_bilinear_upscales_of_sklearn_digits():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    s = digits(input_size=12)
    for pos in (0, 5, len(s.test) - 1):
        row = int(s.test.indices[pos])
        want = F.interpolate(
            torch.tensor(bunch.images[row] / 16.0, dtype=torch.float32)[None, None],
            size=(12, 12),
            mode="bilinear",
            align_corners=False,
        )[0]
        x, y = s.test[pos]
        torch.testing.assert_close(unnormalize(x, MEAN1, STD1), want)
        assert int(y) == bunch.target[row]


def test_digits_normalization_matches_given_mean_and_std():
    raw = digits(mean=[0.0], std=[1.0])
    x, _ = next(iter(make_loader(raw.train_eval, 5000, shuffle=False)))
    m, sd = x.mean().item(), x.std().item()
    assert 0.05 < m < 0.5  # sanity: raw pixels in [0, 1], mostly background
    norm = digits(mean=[m], std=[sd])
    x, _ = next(iter(make_loader(norm.train_eval, 5000, shuffle=False)))
    assert abs(x.mean().item()) < 1e-3
    assert abs(x.std().item() - 1.0) < 1e-3


def test_digits_splits_disjoint_deterministic_and_seeded():
    a, a2, b = digits(seed=0), digits(seed=0), digits(seed=1)
    for s in (a, b):
        assert not ids(s.train) & ids(s.val)
        assert not (ids(s.train) | ids(s.val)) & ids(s.test)
        assert len(ids(s.train) | ids(s.val) | ids(s.test)) == 1797
        assert ids(s.train_eval) == ids(s.train)
    assert ids(a.val) == ids(a2.val) and ids(a.train) == ids(a2.train)
    assert ids(a.val) != ids(b.val)
    # the test split does not move with the seed
    assert ids(a.test) == ids(b.test)
    assert ids(a.train) | ids(a.val) == ids(b.train) | ids(b.val)


def test_digits_val_size_int_and_float():
    n_trainval = 1797 - 359
    assert len(digits(val_size=100).val) == 100
    s = digits(val_size=0.25)
    assert len(s.val) == round(0.25 * n_trainval)
    assert len(s.train) == n_trainval - len(s.val)
    assert len(digits(val_size=n_trainval - 1).train) == 1


@pytest.mark.parametrize("bad", [1438, 5000, 0, -3, 1.0, 0.0, 1.5, "10", True])
def test_bad_val_size_is_a_dataset_error(bad):
    with pytest.raises(DatasetError, match="val_size"):
        digits(val_size=bad)


def test_unknown_dataset_and_bad_normalization():
    with pytest.raises(DatasetError, match="unknown dataset 'mnist'.*'digits', 'cifar10'"):
        load_dataset("mnist", input_size=16, mean=MEAN1, std=STD1, val_size=10)
    with pytest.raises(DatasetError, match="1 channel"):
        digits(mean=MEAN3, std=STD3)
    with pytest.raises(DatasetError, match="std must be positive"):
        digits(std=[0.0])


def test_digits_training_augmentation_is_a_small_translation():
    s = digits()
    idx = torch.arange(64)
    g = torch.Generator().manual_seed(3)
    aug, y_aug = s.train.get_batch(idx, generator=g)
    clean, y = s.train_eval.get_batch(idx)
    assert torch.equal(y_aug, y)
    assert not torch.allclose(aug, clean)  # 1 in 25 chance per image of no shift
    zero = (0.0 - MEAN1[0]) / STD1[0]  # the padding value, normalized
    for a, c in zip(aug, clean, strict=True):
        assert crops_matching(a - zero, c - zero, pad=2, flips=False)


# ---------------------------------------------------------------------------------- cifar10


def write_cifar(folder: Path, n_batches: int = 2, per_batch: int = 20, n_test: int = 10):
    """A tiny CIFAR-10 folder in the real python-pickle format; returns (train, test) arrays."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    train_x, train_y = [], []
    for b in range(1, n_batches + 1):
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, per_batch).tolist()
        batch = {b"batch_label": b"training batch", b"data": data, b"labels": labels}
        (folder / f"data_batch_{b}").write_bytes(pickle.dumps(batch, protocol=2))
        train_x.append(data)
        train_y += labels
    test = rng.integers(0, 256, (n_test, 3072), dtype=np.uint8)
    test_y = rng.integers(0, 10, n_test).tolist()
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": test, b"labels": test_y}))
    return (np.concatenate(train_x), np.array(train_y)), (test, np.array(test_y))


def cifar(root, **kw) -> DataSplits:
    kw.setdefault("input_size", 32)
    kw.setdefault("val_size", 8)
    return load_dataset("cifar10", root, mean=MEAN3, std=STD3, **kw)


def test_cifar10_round_trips_the_pickle_data(tmp_path):
    (train_x, train_y), (test_x, test_y) = write_cifar(tmp_path)
    s = cifar(tmp_path, seed=4)
    assert (s.num_classes, s.in_channels, s.input_size) == (10, 3, 32)
    assert (len(s.train), len(s.val), len(s.test)) == (32, 8, 10)
    assert s.classes[0] == "airplane"
    want = torch.from_numpy(test_x).float().div(255).reshape(-1, 3, 32, 32)
    batches = list(make_loader(s.test, 4, shuffle=False))
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    torch.testing.assert_close(unnormalize(x, MEAN3, STD3), want, atol=1e-5, rtol=0)
    assert y.tolist() == test_y.tolist()
    # val is held out of the training batches, and train + val is all of them
    assert not ids(s.train) & ids(s.val)
    assert ids(s.train) | ids(s.val) == set(range(40))
    for pos in (0, 3):
        row = int(s.val.indices[pos])
        x, y = s.val[pos]
        got = unnormalize(x, MEAN3, STD3)
        torch.testing.assert_close(got, want_row(train_x, row), atol=1e-5, rtol=0)
        assert int(y) == train_y[row]


def want_row(data: np.ndarray, row: int) -> torch.Tensor:
    return torch.from_numpy(data[row]).float().div(255).reshape(3, 32, 32)


@pytest.mark.parametrize(("size", "pad"), [(16, 2), (32, 4)])
def test_cifar10_subfolder_resize_and_augmentation(tmp_path, size, pad):
    write_cifar(tmp_path / "cifar-10-batches-py", n_batches=1)
    s = cifar(tmp_path, input_size=size, val_size=0.25)
    assert (len(s.train), len(s.val)) == (15, 5)
    x, y = next(iter(make_loader(s.train, 8, shuffle=True)))
    assert x.shape == (8, 3, size, size) and x.dtype == torch.float32 and y.dtype == torch.int64
    # train aug = crop with padding 4 (scaled with the image) and flip of the eval image
    g = torch.Generator().manual_seed(0)
    idx = torch.arange(len(s.train))
    aug, _ = s.train.get_batch(idx, generator=g)
    clean, _ = s.train_eval.get_batch(idx)
    zero = ((0.0 - torch.tensor(MEAN3)) / torch.tensor(STD3)).view(3, 1, 1)
    picks = [
        crops_matching(a - zero, c - zero, pad=pad, flips=True)
        for a, c in zip(aug, clean, strict=True)
    ]
    assert all(len(p) == 1 for p in picks)  # random pixels: exactly one crop fits
    assert any(p[0][2] for p in picks) and not all(p[0][2] for p in picks)  # some flipped


def test_cifar10_missing_or_malformed_folder(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(DatasetError, match=f"{missing}: no such folder.*data_batch_1..5"):
        cifar(missing)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match=f"{empty}: not a CIFAR-10 folder"):
        cifar(empty)
    garbage = tmp_path / "garbage"
    write_cifar(garbage)
    (garbage / "data_batch_2").write_bytes(b"this is not a pickle")
    with pytest.raises(DatasetError, match=f"{garbage / 'data_batch_2'}: not a CIFAR-10 batch"):
        cifar(garbage)
    (garbage / "data_batch_2").write_bytes(pickle.dumps({b"data": [1, 2, 3], b"labels": [0]}))
    with pytest.raises(DatasetError, match="data_batch_2: b'data' is"):
        cifar(garbage)
    with pytest.raises(DatasetError, match="cifar10: no root given"):
        load_dataset("cifar10", input_size=32, mean=MEAN3, std=STD3, val_size=8)


class _Evil:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (str(self.target),))


def test_cifar10_pickles_cannot_run_code(tmp_path):
    folder = tmp_path / "evil"
    write_cifar(folder)
    target = tmp_path / "pwned"
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": _Evil(target), b"labels": []}))
    with pytest.raises(DatasetError, match="test_batch: not a CIFAR-10 batch.*mkdir"):
        cifar(folder)
    assert not target.exists()


# ------------------------------------------------------------------------------ imagefolder


def write_image_folder(root: Path, splits=("train", "val"), classes=("cat", "dog"), n=4):
    from PIL import Image

    rng = np.random.default_rng(1)
    for split in splits:
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(n if split == "train" else 2):
                size = (int(rng.integers(10, 20)), int(rng.integers(10, 20)))
                arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
                img = Image.fromarray(arr)
                img = img.convert("L") if i % 2 else img  # mixed channel counts on purpose
                img.save(root / split / c / f"{i}.png")


def test_imagefolder_shapes_labels_and_splits(tmp_path):
    write_image_folder(tmp_path)
    mean, std = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]
    s = load_dataset("imagefolder", tmp_path, input_size=8, mean=mean, std=std, val_size=2)
    assert (s.num_classes, s.in_channels, s.input_size) == (2, 3, 8)
    assert s.classes == ("cat", "dog")
    assert (len(s.train), len(s.val), len(s.test), len(s.train_eval)) == (6, 2, 4, 6)
    assert not set(s.train.indices) & set(s.val.indices)
    assert s.test.targets.tolist() == [0, 0, 1, 1]
    loader = make_loader(s.train, 4, shuffle=True)
    assert len(loader) == 2
    batches = list(loader)
    assert [b[0].shape for b in batches] == [(4, 3, 8, 8), (2, 3, 8, 8)]
    assert all(b[0].dtype == torch.float32 and b[1].dtype == torch.int64 for b in batches)
    assert sorted(torch.cat([b[1] for b in batches]).tolist()) == sorted(s.train.targets.tolist())
    x, y = s.test[0]
    assert x.shape == (3, 8, 8) and y == 0
    grey = load_dataset("imagefolder", tmp_path, input_size=8, mean=[0.5], std=[0.5], val_size=2)
    assert grey.test[3][0].shape == (1, 8, 8) and grey.in_channels == 1


def test_imagefolder_augmentation_replays_with_set_epoch(tmp_path):
    write_image_folder(tmp_path, splits=("train", "test"))
    s = load_dataset("imagefolder", tmp_path, input_size=8, mean=[0.5], std=[0.5], val_size=2)
    loader = make_loader(s.train, 3, shuffle=True, seed=7)
    epoch0 = [b[0] for b in loader]
    epoch1 = [b[0] for b in loader]
    loader.set_epoch(0)
    again = [b[0] for b in loader]
    assert all(torch.equal(a, b) for a, b in zip(epoch0, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(epoch0, epoch1, strict=True))


def test_imagefolder_missing_folders_and_class_mismatch(tmp_path):
    kw = dict(input_size=8, mean=[0.5], std=[0.5], val_size=2)
    (tmp_path / "val" / "cat").mkdir(parents=True)
    with pytest.raises(DatasetError, match=f"{tmp_path}: no train/ folder"):
        load_dataset("imagefolder", tmp_path, **kw)
    with pytest.raises(DatasetError, match="no such folder"):
        load_dataset("imagefolder", tmp_path / "absent", **kw)
    other = tmp_path / "other"
    write_image_folder(other, splits=("train",))
    with pytest.raises(DatasetError, match="no val/ or test/ folder"):
        load_dataset("imagefolder", other, **kw)
    write_image_folder(other, splits=("val",), classes=("cat", "cow"))
    with pytest.raises(DatasetError, match=r"differ.*only in train: \['dog'\]"):
        load_dataset("imagefolder", other, **kw)


# ------------------------------------------------------------------------------ make_loader


def id_dataset(n: int, augment=None) -> TensorImageDataset:
    """n 2x2 images whose label is their own index, so batches show which examples they hold."""
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    return TensorImageDataset(
        images, torch.arange(n), input_size=2, mean=[0.0], std=[1.0], augment=augment
    )


@pytest.mark.parametrize(
    ("n", "bs", "drop_last", "want_batches", "want_last"),
    [(10, 4, False, 3, 2), (10, 4, True, 2, 4), (8, 4, True, 2, 4), (3, 4, True, 0, None)],
)
def test_batch_counts(n, bs, drop_last, want_batches, want_last):
    loader = make_loader(id_dataset(n), bs, shuffle=True, drop_last=drop_last)
    batches = list(loader)
    assert len(loader) == len(batches) == want_batches
    if want_last is not None:
        assert len(batches[-1][1]) == want_last


def test_every_example_once_per_epoch_and_shuffled():
    loader = make_loader(id_dataset(50), 8, shuffle=True, seed=3)
    orders = []
    for _ in range(3):
        ys = torch.cat([y for _, y in loader]).tolist()
        assert sorted(ys) == list(range(50))
        orders.append(ys)
    assert orders[0] != orders[1] != orders[2]
    # images travel with their labels
    for x, y in loader:
        torch.testing.assert_close(x[:, 0, 0, 0], y.float() / 255)
    plain = make_loader(id_dataset(10), 4, shuffle=False)
    assert torch.cat([y for _, y in plain]).tolist() == list(range(10))


def test_set_epoch_reproduces_an_epoch_including_augmentation():
    ds = id_dataset(30, augment=RandomCropFlip(padding=1, flip=True))

    def run(loader):
        return [(x.clone(), y.clone()) for x, y in loader]

    loader = make_loader(ds, 7, shuffle=True, seed=11)
    epochs = [run(loader) for _ in range(3)]
    assert loader.epoch == 3
    loader.set_epoch(1)
    replay = run(loader)
    assert all(
        torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        for a, b in zip(replay, epochs[1], strict=True)
    )
    assert loader.epoch == 2
    # a fresh loader with the same seed sees the same epochs; another seed does not
    assert [y.tolist() for _, y in run(make_loader(ds, 7, shuffle=True, seed=11))] == [
        y.tolist() for _, y in epochs[0]
    ]
    other = run(make_loader(ds, 7, shuffle=True, seed=12))
    assert [y.tolist() for _, y in other] != [y.tolist() for _, y in epochs[0]]
    # the epoch advances when iteration starts, even if the epoch is abandoned
    fresh = make_loader(ds, 7, shuffle=True, seed=11)
    next(iter(fresh))
    assert [y.tolist() for _, y in run(fresh)] == [y.tolist() for _, y in epochs[1]]


def test_loader_over_tensor_dataset_and_bad_batch_size():
    from torch.utils.data import TensorDataset

    ds = TensorDataset(torch.randn(10, 1, 4, 4), torch.arange(10))
    loader = make_loader(ds, 3, shuffle=True)
    assert sorted(torch.cat([y for _, y in loader]).tolist()) == list(range(10))
    with pytest.raises(ValueError, match="batch_size"):
        make_loader(ds, 0, shuffle=True)
