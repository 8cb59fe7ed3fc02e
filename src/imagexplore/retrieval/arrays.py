"""Array kernels shared by feature extraction and index search."""

from __future__ import annotations

import numpy as np


def transposed(x: np.ndarray, rows: int = 4096) -> np.ndarray:
    """A C-ordered copy of ``x.T``, made ``rows`` rows of ``x`` at a time so that each block stays in cache
    (numpy's and torch's own copies of a transposed array are up to ~1.4x slower)."""
    out = np.empty(x.shape[::-1], dtype=x.dtype)
    for lo in range(0, x.shape[0], rows):
        out[:, lo : lo + rows] = x[lo : lo + rows].T
    return out


def concat_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The positions ``starts[i] .. starts[i] + lengths[i] - 1`` of every range, concatenated in order (what
    gathers several posting lists, or several images' rows, in one go)."""
    return np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
