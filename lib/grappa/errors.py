"""One exception type for bad user input, so every command reports it the same way."""
from __future__ import annotations

import dataclasses
import errno
import json
import math
import os
from pathlib import Path


class InputError(Exception):
    """Bad input: names the file, the problem and the fix.

    Commands catch it at the top level, print the message and exit with
    status 2 after removing any partial output.
    """

    def __init__(self, path, problem: str, fix: str | None = None):
        self.path = str(path)
        self.problem = problem
        self.fix = fix
        self.everywhere = False  # every rank finds the same error: only rank 0 reports it
        msg = f"{self.path}: {problem}"
        if fix:
            msg += f" (fix: {fix})"
        super().__init__(msg)


class Diverged(Exception):
    """Training produced a non-finite loss or parameters: the run stops with
    status 1 and one line, writes no result, and keeps its last checkpoint
    (every checkpoint was written before the epoch that diverged). Every rank
    raises it alike (the ranks agree on it), so rank 0 reports it."""

    def __init__(self, epoch: int, what: str, fix: str):
        self.everywhere = True
        super().__init__(f"training diverged in epoch {epoch}: {what} (fix: {fix})")


def check_options(options, checks) -> None:
    """The one bound check of options dataclasses, generator configs and flags:
    raise the InputError of the first failed ``(flag, ok, what it must be)``,
    naming the flag and the value given (for "--a/--b/--c", the first's). A
    float is finite wherever it enters: every float field of a dataclass, and
    every float flag in ``checks`` (NaN or infinity would pass ``x > 0`` or fail
    later as a NaN loss, a hang or an overflow)."""
    if dataclasses.is_dataclass(options):
        for f in dataclasses.fields(options):
            value = getattr(options, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise InputError("--" + f.name.replace("_", "-"), f"must be a finite number, got {value}")
    for name, ok, want in checks:
        value = getattr(options, name[2:].split("/")[0].replace("-", "_"), None)
        if not ok or (isinstance(value, float) and not math.isfinite(value)):
            raise InputError(name, f"must be {want}, got {value}")


# What the machine, not the program, got wrong: reported like bad input (one line, exit 2).
_ENVIRONMENT = {errno.ENOSPC: "free space on that file system, or write elsewhere",
                errno.EDQUOT: "free space within your quota, or write elsewhere",
                errno.EFBIG: "raise the file size limit (ulimit -f), or write elsewhere",
                errno.EROFS: "write to a writable file system",
                errno.EACCES: "write where you have permission", errno.EPERM: "write where you have permission",
                errno.EIO: "check the disk (dmesg), or write elsewhere"}


def environment_error(e: OSError) -> InputError | None:
    """A full, read-only or failing disk as an InputError naming the path; None for other errors."""
    if e.errno not in _ENVIRONMENT:
        return None
    return InputError(e.filename or "(a file)", e.strerror or os.strerror(e.errno), _ENVIRONMENT[e.errno])


def load_json_file(path, schema: str, missing_fix: str) -> dict:
    """A JSON file the user points at (a graph's graph.json, a dataset's manifest): a clear error
    when it is missing, not JSON, or of another schema."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, f"missing {path.name}", missing_fix)
    try:
        d = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise InputError(path, f"not valid JSON ({e})") from e
    if d.get("schema") != schema:
        raise InputError(path, f"field 'schema' is {d.get('schema')!r}, expected {schema!r}")
    return d
