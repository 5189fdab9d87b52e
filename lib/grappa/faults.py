"""Fault injection: one rank kills itself with SIGKILL at a chosen phase.

The reliability tests and ``bench/fault_campaign.py`` set

    GRAPPA_FAULT="RANK:PHASE:COUNT[:RECORD[:ACTION]]"

and rank RANK dies the COUNT-th time (counted from this process's start) it
reaches PHASE, one of ``PHASES`` (training) or ``shard`` (the partitioner,
about to write a shard):

    step         just after a training collective returns: the rank is in its
                 optimizer update and the next step's compute
    allreduce    entering a training collective (the gradient allreduce, the
                 halo alltoallv, the parameter averaging): the others block in it
    checkpoint   mid-write: rank 0 between a checkpoint's digest and its data,
                 the other ranks before the checkpoint barrier
    repartition  a new chunk set loaded, before the ranks agree on it
    eval         entering an evaluation collective

Before it dies it appends ``{"rank", "phase", "count", "time"}`` as a JSON line
to RECORD (if given), so the campaign can time the detection. A SIGKILL is
what the OOM killer and a failed node deliver: no handler, no cleanup runs.
ACTION ``enospc`` raises the error a full disk gives instead (at
``checkpoint`` and ``shard``, where a file is being written); ACTION ``nan``
(at ``step``) makes that collective's result NaN on that rank, as a numeric
blow-up would, and the rank lives on. Unset, every ``hit`` is a dictionary
lookup.
"""
from __future__ import annotations

import errno
import json
import os
import signal
import time
from dataclasses import dataclass, field

PHASES = ("step", "allreduce", "checkpoint", "repartition", "eval")
ACTIONS = ("kill", "enospc", "nan")


@dataclass
class FaultPoints:
    """Counts this rank's arrivals at each phase; kills it at the armed one.

    Args:
        rank (int): this process's rank.
        spec (str, optional): ``RANK:PHASE:COUNT[:RECORD[:ACTION]]``; None or "" disarms.
    """

    rank: int
    spec: str | None = None
    counts: dict = field(default_factory=dict)

    def __post_init__(self):
        self.target = None
        if not self.spec:
            return
        parts = self.spec.split(":", 4) + ["", ""]
        if (not parts[0].isdigit() or parts[1] not in (*PHASES, "shard") or not parts[2].isdigit()
                or parts[4] not in ("", *ACTIONS)):
            raise ValueError(f"GRAPPA_FAULT={self.spec!r}: expected RANK:PHASE:COUNT[:RECORD[:ACTION]], "
                             f"PHASE one of {', '.join(PHASES)}, shard; ACTION one of {', '.join(ACTIONS)}")
        if int(parts[0]) == self.rank:
            self.target = (parts[1], int(parts[2]), parts[3] or None, parts[4] or "kill")

    @classmethod
    def from_env(cls, rank: int) -> FaultPoints:
        return cls(rank, os.environ.get("GRAPPA_FAULT"))

    def hit(self, phase: str, path=None) -> bool:
        """Arrive at ``phase`` (``path``: the file being written, for ``enospc``);
        True when the caller should poison its result (``nan``)."""
        if self.target is None or phase != self.target[0]:
            return False
        self.counts[phase] = n = self.counts.get(phase, 0) + 1
        if n != self.target[1]:
            return False
        if self.target[3] == "nan":
            return True
        if self.target[3] == "enospc":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        if self.target[2]:
            with open(self.target[2], "a") as f:
                f.write(json.dumps({"rank": self.rank, "phase": phase, "count": n, "time": time.time()}) + "\n")
                f.flush()
                os.fsync(f.fileno())
        os.kill(os.getpid(), signal.SIGKILL)
