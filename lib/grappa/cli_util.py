"""Shared plumbing for command-line entry points."""
from __future__ import annotations

import functools
import sys

from grappa.errors import InputError


def reports_input_errors(main):
    """Turn an ``InputError`` into one clear line on stderr and exit status 2."""

    @functools.wraps(main)
    def wrapper(argv=None):
        try:
            return main(argv)
        except InputError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)

    return wrapper
