"""Sets of ids as sorted arrays, by a sort.

NumPy 2.4's ``np.unique`` on integers (so ``np.union1d`` and ``np.setdiff1d``
too) goes through a hash table that is 40 to 50x slower than a sort here:
6.6 s for 7M int64 ids against 0.14 s (docs/BENCHMARKS.md, "Sets of ids").
A halo load takes several such sets a hop, so these are what the
library uses on arrays that grow with the graph.
"""
from __future__ import annotations

import numpy as np


def unique(a) -> np.ndarray:
    """The sorted distinct values of ``a`` (flattened), its dtype kept: ``np.unique(a)``."""
    a = np.sort(np.asarray(a).ravel())
    if len(a) < 2:
        return a
    keep = np.empty(len(a), bool)
    keep[0] = True
    np.not_equal(a[1:], a[:-1], out=keep[1:])
    return a[keep]


def union(a, b) -> np.ndarray:
    """``np.union1d(a, b)``."""
    return unique(np.concatenate([np.asarray(a).ravel(), np.asarray(b).ravel()]))


def setdiff(a, b) -> np.ndarray:
    """The sorted distinct values of ``a`` not in ``b``: ``np.setdiff1d(a, b)``."""
    a = unique(a)
    return a[~np.isin(a, b)]


__all__ = ["unique", "union", "setdiff"]
