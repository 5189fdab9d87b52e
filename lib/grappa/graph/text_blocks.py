"""Parse numeric text (CSV / whitespace, optionally gzipped) in bounded blocks."""
from __future__ import annotations

import gzip
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from grappa.errors import InputError

_COMMENT = re.compile(rb"^[#%].*$", re.M)


def _opener(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def numeric_blocks(path, ncols: int, dtype=np.int64, block_bytes: int = 1 << 26,
                   skip_header: bool | None = None) -> Iterator[np.ndarray]:
    """Yield [rows, ncols] arrays from a delimited numeric text file.

    Separators may be commas, tabs or spaces; lines starting with # or % are
    comments. ``skip_header=None`` skips a first line that is not numeric.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file is missing")
    rest = b""
    first = True
    row0 = 0
    with _opener(path) as f:
        while True:
            try:
                chunk = f.read(block_bytes)
            except (EOFError, OSError) as e:
                raise InputError(path, f"cannot read ({e}); the file may be truncated") from e
            data = rest + chunk
            if chunk:
                cut = data.rfind(b"\n") + 1
                data, rest = data[:cut], data[cut:]
            else:
                rest = b""
            if first and data:
                first = False
                line_end = data.find(b"\n")
                head = data[: line_end if line_end >= 0 else len(data)]
                is_header = not re.fullmatch(rb"[\s0-9eE+\-.,naNA]*", head)
                if skip_header or (skip_header is None and is_header):
                    data = data[line_end + 1:] if line_end >= 0 else b""
            if data:
                data = _COMMENT.sub(b"", data)
                text = re.sub(rb"[,\t ]+", b" ", data).decode("ascii", "replace")
                with warnings.catch_warnings():
                    warnings.simplefilter("error")
                    try:
                        arr = np.fromstring(text, dtype=dtype, sep=" ")
                    except (DeprecationWarning, ValueError) as e:
                        raise InputError(path, f"non-numeric value after row {row0}",
                                         "the file must hold only numbers after an optional header") from e
                if arr.size % ncols:
                    raise InputError(path, f"a line after row {row0} does not have {ncols} numeric columns")
                arr = arr.reshape(-1, ncols)
                row0 += len(arr)
                yield arr
            if not chunk:
                break
