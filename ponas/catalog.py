"""The datasets ponas knows, as plain data and rules: names, channels, split sizes, the
validation split's size. The web server validates and plans a search with these without
importing torch (the loaders of ``ponas.data``, which read the images, need it)."""

from __future__ import annotations

import numbers

DATASETS = ("digits", "cifar10", "imagefolder", "shapes")
BUILTIN_DATASETS = ("digits", "shapes")  # need no folder: bundled or generated in memory
# input channels of the datasets that fix them (an image folder has as many as mean/std give)
DATASET_CHANNELS = {"digits": 1, "shapes": 1, "cifar10": 3}

# The digits test split must not move when the user changes the search seed, or accuracies of
# runs with different seeds would be measured on different images.
DIGITS_TEST_SEED = 12345
DIGITS_TEST_FRACTION = 0.2

# the generated ``shapes`` set (ponas.data.shapes): images in train + validation, and in test
SHAPES_TRAIN = 10_000
SHAPES_TEST = 4_000

# Batches each loader worker process keeps decoded ahead of the training step (ponas.plan
# counts them in a search's host memory).
PREFETCH_BATCHES = 4


class DatasetError(ValueError):
    """A dataset is missing or malformed; the message names the path and what was expected."""


def val_count(val_size: int | float, n: int, where: str) -> int:
    """Number of validation examples out of ``n`` training examples."""
    if n < 2:
        raise DatasetError(
            f"{where}: the training data has {n} example(s); expected at least 2 to hold out "
            "a validation split"
        )
    if isinstance(val_size, bool) or not isinstance(val_size, numbers.Real):
        raise DatasetError(
            f"{where}: val_size={val_size!r}: expected a number of validation examples (int) "
            "or a fraction in (0, 1) (float)"
        )
    if isinstance(val_size, numbers.Integral):
        k = int(val_size)
        if not 1 <= k <= n - 1:
            raise DatasetError(
                f"{where}: val_size={k} does not fit the {n} training examples; expected "
                f"1..{n - 1} (at least one example must stay for training) or a fraction in (0, 1)"
            )
        return k
    frac = float(val_size)
    if not 0.0 < frac < 1.0:
        raise DatasetError(
            f"{where}: val_size={val_size!r}: a float is a fraction and must be in (0, 1); "
            "give an int for a number of examples"
        )
    # Tiny datasets: keep at least one example on each side rather than failing.
    return min(max(round(frac * n), 1), n - 1)
