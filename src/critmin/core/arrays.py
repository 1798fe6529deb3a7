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
