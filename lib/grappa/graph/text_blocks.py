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


def _check_columns(path: Path, data: bytes, ncols: int, line0: int) -> None:
    """Every non-blank line of ``data`` (separators already single spaces,
    comments blanked) holds ``ncols`` fields: a 3-column edge list read as a
    flat stream of ids would pair them wrongly. Vectorised over the bytes."""
    b = np.frombuffer(data, np.uint8)
    if not b.size:
        return
    field = (b != ord(" ")) & (b != ord("\n")) & (b != ord("\r"))
    starts = field & ~np.concatenate(([False], field[:-1]))  # first byte of each field
    line = np.cumsum(b == ord("\n")) - (b == ord("\n"))  # the line each byte belongs to
    counts = np.bincount(line[starts], minlength=int(line[-1]) + 1)
    bad = np.flatnonzero((counts != 0) & (counts != ncols))
    if len(bad):
        i = int(bad[0])
        raise InputError(path, f"line {line0 + i + 1} has {counts[i]} columns, expected {ncols}",
                         f"give {ncols} numeric columns per line" + (" (an edge list holds source and destination "
                                                                       "ids only: drop weights and other columns)"
                                                                       if ncols == 2 else ""))


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
    row0 = line0 = 0  # rows yielded, lines consumed (for error messages)
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
                    line0 += 1
            if data:
                data = re.sub(rb"[,\t ]+", b" ", _COMMENT.sub(b"", data))
                _check_columns(path, data, ncols, line0)
                line0 += data.count(b"\n")
                text = data.decode("ascii", "replace")
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
