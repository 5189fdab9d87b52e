"""The communication interface every method uses, with exact byte counting.

Each call adds the bytes *this rank sends* to a per-category counter under a
fixed, documented cost model (see docs/ARCHITECTURE.md, "Counting bytes"):

    allreduce   2 (P-1)/P * n   ring reduce-scatter + allgather   2 (P-1) rounds
    allgather   (P-1) * n_own   each rank's block travels to every other rank   P-1 rounds
    broadcast   root: (P-1) * n, others 0 (also the non-blocking ibroadcast)   ceil(log2 P) rounds
    alltoallv   sum of the bytes addressed to other ranks   1 round (the sends overlap)
    barrier     0

so comparisons between methods are exact and independent of the backend's
internal algorithm choice. The rounds (messages one after another, each
paying the link's latency) feed grappa.analysis.comm_model's time model.
Beside the bytes, the counter keeps the seconds
spent inside each category's calls (a non-blocking call: posting it plus
waiting for it), measured, not modelled: on a network it is the
communication time, waiting for slower ranks included.
"""
from __future__ import annotations

import os
import time
from collections import defaultdict

import torch

from grappa.comm.watchdog import Watchdog
from grappa.faults import FaultPoints
from grappa.launch_env import env_rank_size  # noqa: F401  (re-exported: grappa.comm.env_rank_size)

SUM, AVERAGE, MAX, MIN = "sum", "average", "max", "min"


def threads_per_rank() -> int:
    """Cores of this node divided by its ranks (OMP_NUM_THREADS wins if set)."""
    if os.environ.get("OMP_NUM_THREADS"):
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    # srun sets SLURM_STEP_TASKS_PER_NODE ("4", "2(x3)" or "3,1"): without it, 4 srun ranks each
    # took every core and ran 4x slower than under mpirun.
    local = (os.environ.get("OMPI_COMM_WORLD_LOCAL_SIZE") or os.environ.get("SLURM_STEP_TASKS_PER_NODE")
             or os.environ.get("SLURM_NTASKS_PER_NODE") or os.environ.get("LOCAL_WORLD_SIZE") or "1")
    # GRAPPA_NODE_CORES: an emulated node's share of the machine (grappa.emulated_cluster); one
    # rank a node took both cores beside the other node's rank: Grappa's Cora epoch 20 -> 300 ms.
    cores = int(os.environ.get("GRAPPA_NODE_CORES") or os.cpu_count() or 1)
    return max(1, cores // max(1, int(local.split(",")[0].split("(")[0])))


class ByteCounter:
    """Bytes sent, calls made and seconds spent in them, by category."""

    def __init__(self):
        self.bytes: dict[str, int] = defaultdict(int)
        self.calls: dict[str, int] = defaultdict(int)
        self.rounds: dict[str, int] = defaultdict(int)
        self.seconds: dict[str, float] = defaultdict(float)

    def add(self, category: str, nbytes: float, rounds: int = 1) -> None:
        self.bytes[category] += int(round(nbytes))
        self.calls[category] += 1
        self.rounds[category] += rounds

    def snapshot(self) -> dict[str, int]:
        return dict(self.bytes)

    def since(self, snap: dict[str, int]) -> dict[str, int]:
        return {k: v - snap.get(k, 0) for k, v in self.bytes.items() if v - snap.get(k, 0)}

    def total(self, prefix: str = "") -> int:
        return sum(v for k, v in self.bytes.items() if k.startswith(prefix))


class Pending:
    """A non-blocking collective in flight: ``test()`` polls without blocking,
    ``wait()`` blocks and returns the result."""

    def __init__(self, result: torch.Tensor, test=lambda: True, wait=None):
        self._result, self._test, self._wait = result, test, wait
        self._clock = None  # (ByteCounter, category) that the blocking wait is charged to

    def timed(self, counter: ByteCounter, category: str) -> Pending:
        self._clock = (counter, category)
        return self

    def test(self) -> bool:
        return bool(self._test())

    def wait(self) -> torch.Tensor:
        if self._wait is not None:
            t0 = time.perf_counter()
            self._result, self._wait = self._wait(), None
            if self._clock:
                self._clock[0].seconds[self._clock[1]] += time.perf_counter() - t0
        return self._result


def _log2(p: int) -> int:
    return max(p - 1, 0).bit_length()


def nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


class Comm:
    """Base class: subclasses implement the ``_`` methods; counting lives here."""

    name = "base"

    def __init__(self, rank: int, size: int, local_rank: int = 0, timeout_s: float = 600.0):
        self.rank, self.size, self.local_rank = rank, size, local_rank
        self.counter = ByteCounter()
        self.faults = FaultPoints.from_env(rank)  # disarmed unless GRAPPA_FAULT names this rank
        self.watchdog = Watchdog(rank, timeout_s) if size > 1 else None

    def fault_point(self, phase: str, path=None) -> None:
        """Where the reliability tests kill a rank (``grappa.faults``); a no-op otherwise."""
        self.faults.hit(phase, path)

    def _enter(self, category: str) -> None:
        self._entered = time.perf_counter()
        if self.watchdog:
            self.watchdog.enter(category)
        if category.startswith("train_"):
            self.faults.hit("allreduce")
        elif category == "eval":
            self.faults.hit("eval")

    def _leave(self, category: str, result):
        self.counter.seconds[category] += time.perf_counter() - self._entered
        if self.watchdog:
            self.watchdog.leave()
        if category.startswith("train_") and self.faults.hit("step") and isinstance(result, torch.Tensor):
            result = result.clone()  # GRAPPA_FAULT ...::nan: one gradient entry blows up on this rank
            result.view(-1)[0] = float("nan")
        return result

    # -- public API (counts, then delegates) ---------------------------------
    def _count_allreduce(self, category: str, t: torch.Tensor, rounds: bool = True) -> None:
        """The cost model's ring allreduce: 2 (P-1)/P x the tensor's bytes, 2 (P-1) rounds (none for
        values that ride in another tensor's allreduce)."""
        p = self.size
        self.counter.add(category, 2 * (p - 1) / p * nbytes(t), 2 * (p - 1) if rounds else 0)

    def allreduce(self, t: torch.Tensor, op: str = SUM, category: str = "other") -> torch.Tensor:
        self._count_allreduce(category, t)
        self._enter(category)
        return self._leave(category, self._allreduce(t, op) if self.size > 1 else t.clone())

    def allreduce_carrying(self, t: torch.Tensor, scalars: list[float], category: str = "other"):
        """Sum-allreduce of ``t`` with a few control scalars in the same collective (one latency, not
        two): ``t``'s bytes are counted under ``category``, the scalars' under control. Returns
        (the sum of ``t``, the sums of the scalars)."""
        extra = torch.tensor(scalars, dtype=t.dtype)
        self._count_allreduce(category, t)
        self._count_allreduce("control", extra, rounds=False)
        both = torch.cat([t.detach().reshape(-1), extra])
        self._enter(category)
        out = self._leave(category, self._allreduce(both, SUM) if self.size > 1 else both)
        return out[: t.numel()].view_as(t), out[t.numel():]

    def allgather(self, t: torch.Tensor, category: str = "other") -> torch.Tensor:
        """Concatenate every rank's tensor along dim 0 (first dims may differ)."""
        self.counter.add(category, (self.size - 1) * nbytes(t), self.size - 1)
        self._enter(category)
        return self._leave(category, self._allgather(t) if self.size > 1 else t.clone())

    def broadcast(self, t: torch.Tensor, root: int = 0, category: str = "other") -> torch.Tensor:
        self.counter.add(category, (self.size - 1) * nbytes(t) if self.rank == root else 0, _log2(self.size))
        self._enter(category)
        return self._leave(category, self._broadcast(t, root) if self.size > 1 else t.clone())

    def ibroadcast(self, t: torch.Tensor, root: int = 0, category: str = "other", name: str = "") -> Pending:
        """Non-blocking broadcast: every rank posts it (non-roots early, to poll
        with ``test()``); it completes once the root has posted its value.
        ``name`` must be the same on every rank and new for every call."""
        self.counter.add(category, (self.size - 1) * nbytes(t) if self.rank == root else 0, _log2(self.size))
        if self.size == 1:
            return Pending(t.clone())
        t0 = time.perf_counter()
        pending = self._ibroadcast(t, root, name).timed(self.counter, category)
        self.counter.seconds[category] += time.perf_counter() - t0
        return pending

    def alltoallv(self, t: torch.Tensor, splits: list[int], category: str = "other"):
        """Send rows ``t[sum(splits[:j]) : sum(splits[:j+1])]`` to rank j.

        Returns (received rows concatenated by source rank, rows received per rank).
        """
        splits = self._count_alltoallv(t, splits, category)
        self._enter(category)
        return self._leave(category, (t.clone(), splits) if self.size == 1 else self._alltoallv(t, splits))

    def ialltoallv(self, t: torch.Tensor, splits: list[int], recv_splits: list[int],
                   category: str = "other") -> Pending:
        """Non-blocking ``alltoallv`` when the receiver knows ``recv_splits`` (rows
        from each rank): compute while it is in flight, then ``wait()`` for the rows."""
        splits = self._count_alltoallv(t, splits, category)
        self._enter(category)
        # Posted, not waited for: leave at once, or the watchdog would time the caller's
        # overlapped compute (and every later stretch until the next blocking collective).
        return self._leave(category, Pending(t.clone()) if self.size == 1 else
                           self._ialltoallv(t, splits, [int(s) for s in recv_splits]).timed(self.counter, category))

    def _count_alltoallv(self, t, splits, category) -> list[int]:
        splits = [int(s) for s in splits]
        if len(splits) != self.size or sum(splits) != t.shape[0]:
            raise ValueError(f"alltoallv: splits {splits} do not match size {self.size} and rows {t.shape[0]}")
        row = nbytes(t[:1]) if t.shape[0] else 0
        self.counter.add(category, row * (sum(splits) - splits[self.rank]))
        return splits

    def barrier(self) -> None:
        if self.size > 1:
            self._enter("barrier")
            self._leave("barrier", self._barrier())

    def allreduce_object_max(self, value: float) -> float:
        """Small helper for control decisions (e.g. 'any rank asked to stop'), counted as control."""
        return float(self.allreduce(torch.tensor([float(value)], dtype=torch.float64), MAX, "control")[0])

    def shutdown(self) -> None:
        pass

    # -- backend hooks ---------------------------------------------------------
    def _allreduce(self, t, op):
        raise NotImplementedError

    def _allgather(self, t):
        raise NotImplementedError

    def _broadcast(self, t, root):
        raise NotImplementedError

    def _alltoallv(self, t, splits):
        raise NotImplementedError

    def _ibroadcast(self, t, root, name) -> Pending:
        raise NotImplementedError

    def _ialltoallv(self, t, splits, recv_splits) -> Pending:
        """Backends without a non-blocking alltoallv: blocking, done at once."""
        return Pending(self._alltoallv(t, splits)[0])

    def _barrier(self):
        raise NotImplementedError


class SingleComm(Comm):
    """One process, no communication (centralized training, unit tests)."""

    name = "single"

    def __init__(self):
        super().__init__(0, 1, 0)
