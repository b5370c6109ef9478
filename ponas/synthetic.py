"""The old home of the ``shapes`` data set, kept so ``ponas.synthetic`` imports keep working:
it re-exports :mod:`ponas.data.shapes`, where the data set now lives."""

from ponas.data.shapes import (
    SHAPES_CLASSES,
    SHAPES_SEED,
    SHAPES_SIZE,
    SHAPES_TEST_SEED,
    generate_shapes,
    load_shapes,
)

__all__ = [
    "SHAPES_CLASSES",
    "SHAPES_SEED",
    "SHAPES_SIZE",
    "SHAPES_TEST_SEED",
    "generate_shapes",
    "load_shapes",
]
