"""grappa.id_sets: sort-based sets of ids give NumPy's results (issue 29's load speed)."""
import numpy as np
import pytest
from grappa.id_sets import setdiff, union, unique


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.float64])
def test_unique_union_setdiff_are_numpys(dtype):
    rng = np.random.default_rng(0)
    for n, hi in ((0, 5), (1, 5), (2, 1), (1000, 50), (20000, 100000)):
        a = rng.integers(0, hi, n).astype(dtype)
        b = rng.integers(0, hi, n // 2 + 1).astype(dtype)
        for ours, theirs in ((unique(a), np.unique(a)), (union(a, b), np.union1d(a, b)),
                             (setdiff(a, b), np.setdiff1d(a, b))):
            assert ours.dtype == theirs.dtype
            np.testing.assert_array_equal(ours, theirs)


def test_unique_flattens_and_leaves_its_input_alone():
    a = np.array([[3, -1, 3], [7, -1, 0]])
    before = a.copy()
    np.testing.assert_array_equal(unique(a), [-1, 0, 3, 7])
    np.testing.assert_array_equal(a, before)
