"""One exception type for bad user input, so every command reports it the same way."""
from __future__ import annotations


class InputError(Exception):
    """Bad input: names the file, the problem and the fix.

    Commands catch it at the top level, print the message and exit with
    status 2 after removing any partial output.
    """

    def __init__(self, path, problem: str, fix: str | None = None):
        self.path = str(path)
        self.problem = problem
        self.fix = fix
        msg = f"{self.path}: {problem}"
        if fix:
            msg += f" (fix: {fix})"
        super().__init__(msg)
