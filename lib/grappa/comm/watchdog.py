"""Ends a rank whose collective waits too long: a peer that is alive but silent.

A rank that dies is the launcher's to catch (mpirun and srun end the job
within seconds). A rank that hangs (stopped, stuck in I/O, deadlocked) is
not: its peers would wait in their next collective forever, and Horovod's
own stall check cannot help when the hung rank's background thread is
frozen too (it takes part in every negotiation). So every blocking
collective is timed here, and a wait longer than ``--comm-timeout`` prints
one line and leaves without MPI's finalize, which the launcher sees: the
job ends.
"""
from __future__ import annotations

import os
import sys
import threading
import time


class Watchdog:
    """Args:
        rank (int): this rank, for the message.
        timeout_s (float): longest wait in one collective (default 600).
    """

    def __init__(self, rank: int, timeout_s: float = 600.0):
        self.rank, self.timeout_s = rank, timeout_s
        self.since: float | None = None
        self.what = ""
        self._thread: threading.Thread | None = None

    def enter(self, what: str) -> None:
        self.what, self.since = what, time.monotonic()
        if self._thread is None:  # started on first use: single-process runs never start it
            self._thread = threading.Thread(target=self._watch, name="grappa-watchdog", daemon=True)
            self._thread.start()

    def leave(self) -> None:
        self.since = None

    def _watch(self) -> None:
        while True:
            time.sleep(min(5.0, self.timeout_s / 4))
            since = self.since
            if since is not None and time.monotonic() - since > self.timeout_s:
                print(f"error: rank {self.rank} waited {time.monotonic() - since:.0f} s in a '{self.what}' "
                      "collective: another rank is hung (alive but silent); ending the job "
                      "(fix: find the hung rank; raise --comm-timeout if that wait was legitimate)",
                      file=sys.stderr, flush=True)
                os._exit(1)
