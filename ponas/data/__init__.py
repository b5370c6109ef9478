"""Data sets and loaders, split into train / validation / test; this module only re-exports.

One module per job: ``transforms`` (batch-wise augmentation, the image folders' torchvision
pipelines), ``tensor`` (in-memory data sets as views over one tensor), ``splits`` (the seeded
holdout, stratified subsets, :class:`DataSplits`), ``loader`` (:class:`BatchLoader`, which
knows no data set), one module per data set (``digits``, ``shapes``, ``cifar``, ``folder``) and
``registry`` (:func:`load_dataset` by name). Every split is a
:class:`torch.utils.data.Dataset` whose items are ``(x float32 CHW normalized, y int64)``.

The validation split is always held out of the training data by a seeded permutation, so the
search never sees test data. Speed matters more than generality here: a whole digits search
runs on two CPU cores in minutes. The in-memory datasets (digits, shapes, CIFAR-10) are
:class:`TensorImageDataset` views over one shared tensor; :func:`make_loader` builds their
batches by indexing that tensor, with augmentation and normalization done on the whole batch at
once (no per-item Python, no worker processes). Image folders go through
:class:`torch.utils.data.DataLoader` behind the same interface. Loaders are deterministic:
epoch ``k`` shuffles (and augments) with a generator seeded by ``(seed, k)``, and
:meth:`BatchLoader.set_epoch` replays any epoch, so a resumed search sees exactly the batches
it would have seen.
"""

# ``ponas.data`` was one module until it became this package; the names it imported from
# elsewhere (DIGITS_TEST_FRACTION, DIGITS_TEST_SEED, PREFETCH_BATCHES, val_count, epoch_seed)
# stay importable from here (``as`` marks them re-exported), though not in ``__all__``.
from ponas.catalog import BUILTIN_DATASETS, DATASET_CHANNELS, DATASETS, DatasetError
from ponas.catalog import DIGITS_TEST_FRACTION as DIGITS_TEST_FRACTION
from ponas.catalog import DIGITS_TEST_SEED as DIGITS_TEST_SEED
from ponas.catalog import PREFETCH_BATCHES as PREFETCH_BATCHES
from ponas.catalog import val_count as val_count
from ponas.data.cifar import CIFAR10_CLASSES
from ponas.data.folder import ImageFolderSplit
from ponas.data.loader import BatchLoader, make_loader
from ponas.data.registry import load_dataset, load_test_split
from ponas.data.shapes import SHAPES_CLASSES, generate_shapes
from ponas.data.splits import DataSplits, split, stratified_subset, subset, targets
from ponas.data.tensor import TensorImageDataset
from ponas.data.transforms import Augment, InputSpec, RandomCropFlip
from ponas.train import epoch_seed as epoch_seed

__all__ = [
    "BUILTIN_DATASETS",
    "CIFAR10_CLASSES",
    "DATASETS",
    "DATASET_CHANNELS",
    "SHAPES_CLASSES",
    "Augment",
    "BatchLoader",
    "DataSplits",
    "DatasetError",
    "ImageFolderSplit",
    "InputSpec",
    "RandomCropFlip",
    "TensorImageDataset",
    "generate_shapes",
    "load_dataset",
    "load_test_split",
    "make_loader",
    "split",
    "stratified_subset",
    "subset",
    "targets",
]
