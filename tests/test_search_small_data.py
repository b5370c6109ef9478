"""Small training splits (issue 21): stage 2 keeps cycling through epochs for any number of
fine-tune steps, and a batch size no epoch can fill is refused before stage 1."""

import numpy as np
import pytest
from PIL import Image

from ponas.search import ConfigError, run_search
from ponas.space import SearchSpace, load_space
from tests.conftest import Recorder


def two_layer_space():
    """The digits space cut to two layers of one candidate each: stage 2 is then just its
    fine-tunes, a couple of hundred tiny steps."""
    spec = load_space("digits").to_dict()
    spec["stages"] = [[8, 1, 1], [8, 1, 1]]
    spec["candidates"] = {"expansions": [3], "kernels": [3], "se": [False], "skip": False}
    spec["head"] = {"channels": 16, "dropout": 0.0}
    return SearchSpace.from_dict(spec)


def write_tiny_folder(root, per_class=3):
    """2 classes x ``per_class`` training images (and 2 test images each), 12x12 RGB PNGs."""
    rng = np.random.default_rng(0)
    for split, n in (("train", per_class), ("val", 2)):
        for c in ("cat", "dog"):
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                arr = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
                Image.fromarray(arr).save(root / split / c / f"{i}.png")
    return root


def settings(root, **kw):
    return {
        "dataset": "imagefolder",
        "dataset_dir": str(root),
        "input_size": 8,
        "val_size": 2,  # 6 images: 4 to train on, 2 held out
        "epochs": 1,
        "batch_size": 4,  # one whole batch per epoch
        "suffix_samples": 1,
        "bn_batches": 2,
        "eval_batches": 1,
        "device": "cpu",
        **kw,
    }


def test_fine_tuning_longer_than_a_hundred_epochs_of_a_tiny_folder_finishes(tmp_path):
    root = write_tiny_folder(tmp_path / "data")
    # one batch an epoch: 150 fine-tune steps need 150 passes over the data (stage 2 used to
    # die with a bare StopIteration after 100)
    space = two_layer_space()
    table = run_search(space, settings(root, finetune_steps=150), tmp_path / "out", Recorder())
    assert table.path == ["e3_k3", "e3_k3"]
    assert all(0 <= a <= 1 for row in table.accuracy for a in row if a is not None)
    assert table.space["num_classes"] == 2


def test_a_batch_larger_than_the_training_split_is_refused_before_stage_1(tmp_path):
    root = write_tiny_folder(tmp_path / "data")
    recorder = Recorder()
    with pytest.raises(ConfigError) as refused:
        run_search("digits", settings(root, batch_size=8), tmp_path / "out", recorder)
    assert str(refused.value) == (
        "batch_size 8 is larger than the training split (4 examples after holding out "
        "val_size=2), so no epoch gives a whole batch; use batch_size <= 4 or more training data"
    )
    assert recorder.events == []  # nothing trained
    assert not (tmp_path / "out" / "checkpoints").exists()
