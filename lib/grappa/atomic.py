"""Write-then-rename helpers: a crash never leaves output that looks complete."""
from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from grappa.errors import InputError


def prepare_output_dir(path, overwrite: bool) -> Path:
    """Refuse an existing output directory unless ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise InputError(path, "output directory already exists", "pass --overwrite or choose another --out")
    return path


@contextlib.contextmanager
def atomic_dir(final, overwrite: bool = False):
    """Yield a temporary sibling directory; rename it to ``final`` on success.

    On any exception the temporary directory is removed and ``final`` is left
    untouched, so readers never see a half-written result.
    """
    final = prepare_output_dir(final, overwrite)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)


def atomic_write_bytes(path, data: bytes) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
