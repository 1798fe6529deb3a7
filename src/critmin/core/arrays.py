"""Array type aliases shared by every layer."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]


def block_index(rows: Sequence[int] | IntArray, cols: Sequence[int] | IntArray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the ``rows x cols`` block of a 2-D array, as :func:`numpy.ix_` gives for integer lists.

    A fraction of ``np.ix_``'s cost, which the instruments pay for every draw, mineral and period.
    """
    return np.array(rows, dtype=np.intp).reshape(-1, 1), np.array(cols, dtype=np.intp)


def stack_rows(rows: Sequence[FloatArray]) -> FloatArray:
    """``np.stack(rows)`` for reading: where the rows are already every row of one C-contiguous array, in
    order (the outcomes of a batch read together), that array itself, not a copy (laid out as the copy would
    be, so reductions over it add in the same order). Do not write into the result."""
    whole = rows[0].base
    if (
        isinstance(whole, np.ndarray)
        and whole.flags.c_contiguous
        and whole.shape[0] == len(rows)
        and whole.shape[1:] == rows[0].shape
    ):
        start = whole.__array_interface__["data"][0]
        step = whole.strides[0]
        if all(
            row.base is whole and row.__array_interface__["data"][0] == start + b * step for b, row in enumerate(rows)
        ):
            return whole
    return np.stack(rows)
