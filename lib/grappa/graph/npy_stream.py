"""Append blocks to a .npy file whose final length is not known in advance.

Generators and importers stream edges in blocks; memory stays bounded by the
block size. The header is written with room to spare and patched on close.
"""
from __future__ import annotations

import numpy as np

_HEADER_BYTES = 128  # magic(6) + version(2) + len(2) + dict, padded; fits any shape


def _header(dtype: np.dtype, shape: tuple) -> bytes:
    d = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    body = repr(d).encode("latin1")
    pad = _HEADER_BYTES - 10 - len(body) - 1
    if pad < 0:
        raise ValueError(f"npy header too long for shape {shape}")
    return b"\x93NUMPY\x01\x00" + (_HEADER_BYTES - 10).to_bytes(2, "little") + body + b" " * pad + b"\n"


class NpyAppender:
    """``with NpyAppender(path, dtype, row_shape) as w: w.append(block)``."""

    def __init__(self, path, dtype, row_shape: tuple = ()):
        self.path = path
        self.dtype = np.dtype(dtype)
        self.row_shape = tuple(row_shape)
        self.rows = 0
        self._f = open(path, "wb")
        self._f.write(_header(self.dtype, (0,) + self.row_shape))

    def append(self, block) -> None:
        block = np.ascontiguousarray(block, dtype=self.dtype)
        if block.shape[1:] != self.row_shape:
            raise ValueError(f"block rows have shape {block.shape[1:]}, expected {self.row_shape}")
        self._f.write(block.tobytes())
        self.rows += block.shape[0]

    def close(self) -> None:
        if self._f.closed:
            return
        self._f.seek(0)
        self._f.write(_header(self.dtype, (self.rows,) + self.row_shape))
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def npy_shape(path) -> tuple:
    """Shape stored in a .npy header, without reading the data."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        shape, _, _ = np.lib.format._read_array_header(f, version)  # noqa: SLF001
    return shape


__all__ = ["NpyAppender", "npy_shape"]
