"""Shared plumbing for command-line entry points."""
from __future__ import annotations

import contextlib
import functools
import io
import os
import sys
import time
import traceback

from grappa.errors import Diverged, InputError, environment_error
from grappa.launch_env import env_rank_size
from grappa.plugins import load_plugins


def _leave(status: int) -> None:
    """Exit now. Under several ranks, skip the interpreter's shutdown: MPI's
    finalize waits for every rank, so a rank that failed alone would wait
    there for ranks that are blocked in a collective (or stopped) and the job
    would hang instead of ending. The launcher sees this exit and ends the job."""
    sys.stdout.flush()
    sys.stderr.flush()
    if env_rank_size()[1] > 1:
        os._exit(status)
    sys.exit(status)


def _failed() -> None:
    """A bug: the traceback, headed by the rank under several ranks, and out at once."""
    if env_rank_size()[1] == 1:
        raise  # noqa: PLE0704 - called from an except block: the usual traceback and status
    print(f"[rank {env_rank_size()[0]}] failed:\n{traceback.format_exc()}", file=sys.stderr, end="")
    _leave(1)


def _let_rank0_report() -> None:
    """On a rank other than 0, for an error every rank found alike: exiting
    first would let the launcher end the job before rank 0 has printed, so
    wait to be ended with the job instead (60 s at most)."""
    time.sleep(60)


def parse_args_once(parser, argv=None):
    """``parser.parse_args`` where every rank parses the same command line:
    only rank 0 prints a usage error (every rank still exits with status 2)."""
    if env_rank_size()[0] == 0:
        return parser.parse_args(argv)
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            return parser.parse_args(argv)
    except SystemExit as e:
        if e.code:
            _let_rank0_report()
        raise


def checked_everywhere(fn, *args):
    """``fn(*args)`` whose InputError every rank raises alike (flag checks): rank 0 reports it."""
    try:
        return fn(*args)
    except InputError as e:
        e.everywhere = True
        raise


def reports_input_errors(main):
    """Turn an ``InputError``, or a full, read-only or failing disk, into one
    clear line on stderr and exit status 2 (a ``Diverged`` run: status 1);
    under several ranks, any other
    error ends this rank at once (status 1) with its traceback headed by the
    rank, so the job cannot hang. The plugin modules (``GRAPPA_PLUGINS``) are
    imported first, so every command's registries and ``--help`` know them."""

    @functools.wraps(main)
    def wrapper(argv=None):
        try:
            load_plugins()
            return main(argv)
        except (InputError, Diverged) as e:
            if e.everywhere and env_rank_size()[0] != 0:
                _let_rank0_report()
            else:
                print(f"error: {e}", file=sys.stderr)
            _leave(2 if isinstance(e, InputError) else 1)
        except OSError as e:
            if (env := environment_error(e)) is None:
                _failed()
            print(f"error: {env}", file=sys.stderr)
            _leave(2)
        except Exception:
            _failed()

    return wrapper
