"""Horovod backend (the default under MPI): collectives via horovod.torch."""
from __future__ import annotations

import torch

from grappa.comm.base import AVERAGE, MAX, MIN, SUM, Comm, Pending


def stall_check_s(timeout_s: float, expected_wait_s: float) -> int:
    """Seconds before Horovod warns of a stall ("... which will cause deadlock"):
    60 s (or HOROVOD_STALL_CHECK_TIME_SECONDS), raised past the longest legitimate
    wait (a time-based averaging round, when ranks post a broadcast that rank 0
    answers T seconds later), and never past the shutdown at the timeout."""
    import math
    import os

    base = int(os.environ.get("HOROVOD_STALL_CHECK_TIME_SECONDS", 60))
    legit = math.ceil(1.25 * expected_wait_s) + 5 if expected_wait_s > 0 else 0
    return max(1, min(max(base, legit), int(timeout_s)))


class HorovodComm(Comm):
    name = "horovod"

    def __init__(self, timeout_s: float = 600.0, expected_wait_s: float = 0.0):
        import os

        # grappa's collectives vary in shape (eval exchanges), which only churns
        # Horovod's response cache and floods the log with eviction warnings.
        os.environ.setdefault("HOROVOD_CACHE_CAPACITY", "0")
        # A rank that stops submitting (hung, not dead) ends the job instead of
        # stalling it forever: warn after 60 s, shut down after the timeout.
        os.environ["HOROVOD_STALL_CHECK_TIME_SECONDS"] = str(stall_check_s(timeout_s, expected_wait_s))
        os.environ.setdefault("HOROVOD_STALL_SHUTDOWN_TIME_SECONDS", str(int(timeout_s)))
        import horovod.torch as hvd

        hvd.init()
        self.hvd = hvd
        self._ops = {SUM: hvd.Sum, AVERAGE: hvd.Average, MAX: hvd.Max, MIN: hvd.Min}
        super().__init__(hvd.rank(), hvd.size(), hvd.local_rank(), timeout_s)

    def _allreduce(self, t, op):
        return self.hvd.allreduce(t, op=self._ops[op])

    def _allgather(self, t):
        return self.hvd.allgather(t)

    def _broadcast(self, t, root):
        return self.hvd.broadcast(t, root_rank=root)

    def _ibroadcast(self, t, root, name):
        h = self.hvd.broadcast_async(t.detach().clone(), root_rank=root, name=name or None)
        return Pending(t, lambda: self.hvd.poll(h), lambda: self.hvd.synchronize(h))

    def _alltoallv(self, t, splits):
        out = self.hvd.alltoall(t, splits=torch.tensor(splits, dtype=torch.int32))
        received, recv_splits = out if isinstance(out, tuple) else (out, None)
        if recv_splits is None:  # older Horovod: ask the peers
            recv_splits = self.hvd.alltoall(torch.tensor(splits, dtype=torch.int32))
        return received, [int(s) for s in recv_splits]

    def _ialltoallv(self, t, splits, recv_splits):
        h = self.hvd.alltoall_async(t.contiguous(), splits=torch.tensor(splits, dtype=torch.int32))

        def wait():
            out = self.hvd.synchronize(h)
            return out[0] if isinstance(out, tuple) else out

        return Pending(None, lambda: self.hvd.poll(h), wait)

    def _barrier(self):
        self.hvd.barrier()

    def shutdown(self):
        self.hvd.shutdown()
