"""A restricted unpickler for the Planetoid files: it admits only the classes
those files contain (numpy arrays, scipy CSR matrices, a defaultdict of
lists), so a crafted file cannot run code; anything else is an InputError."""
from __future__ import annotations

import pickle
import warnings

from grappa.errors import InputError

ALLOWED = {
    ("numpy", "dtype"), ("numpy", "ndarray"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("scipy.sparse.csr", "csr_matrix"), ("scipy.sparse._csr", "csr_matrix"),
    ("collections", "defaultdict"), ("builtins", "list"), ("builtins", "dict"), ("builtins", "set"),
    ("__builtin__", "list"), ("__builtin__", "dict"), ("__builtin__", "set"),  # Python 2 names
}


class _Restricted(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: not a class Planetoid files contain")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # numpy.core -> numpy._core, old scipy paths
            return super().find_class(module, name)


def load_planetoid_pickle(path):
    """Unpickle one Planetoid file (latin1, as the Python 2 originals need)."""
    try:
        with open(path, "rb") as f, warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return _Restricted(f, encoding="latin1").load()
    except Exception as e:  # truncated, foreign or crafted
        raise InputError(path, f"cannot unpickle ({type(e).__name__}: {e})",
                         "the file may be truncated or not a Planetoid file; copy it again") from e
