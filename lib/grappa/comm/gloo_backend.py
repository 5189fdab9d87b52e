"""torch.distributed backend over gloo (no Horovod needed)."""
from __future__ import annotations

import datetime
import os
import socket

import torch
import torch.distributed as dist

from grappa.comm.base import AVERAGE, MAX, MIN, SUM, Comm, Pending, env_rank_size


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rendezvous(rank: int) -> str:
    """MASTER_ADDR/PORT from the environment, else agreed through MPI."""
    if "MASTER_ADDR" in os.environ and "MASTER_PORT" in os.environ:
        return f"tcp://{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
    from mpi4py import MPI

    addr = None
    if rank == 0:
        addr = f"tcp://{socket.gethostbyname(socket.gethostname())}:{_free_port()}"
    return MPI.COMM_WORLD.bcast(addr, root=0)


class GlooComm(Comm):
    name = "gloo"

    def __init__(self, timeout_s: float = 600.0):
        rank, size, local_rank = env_rank_size()
        if not dist.is_initialized():
            dist.init_process_group("gloo", init_method=_rendezvous(rank), rank=rank, world_size=size,
                                    timeout=datetime.timedelta(seconds=timeout_s))
        self._ops = {SUM: dist.ReduceOp.SUM, AVERAGE: dist.ReduceOp.SUM, MAX: dist.ReduceOp.MAX,
                     MIN: dist.ReduceOp.MIN}
        super().__init__(dist.get_rank(), dist.get_world_size(), local_rank, timeout_s)

    def _allreduce(self, t, op):
        out = t.detach().clone()
        dist.all_reduce(out, op=self._ops[op])
        return out / self.size if op == AVERAGE else out

    def _allgather(self, t):
        counts = [torch.zeros(1, dtype=torch.int64) for _ in range(self.size)]
        dist.all_gather(counts, torch.tensor([t.shape[0]], dtype=torch.int64))
        sizes = torch.cat(counts)
        m = int(sizes.max())
        padded = torch.zeros((m,) + tuple(t.shape[1:]), dtype=t.dtype)
        padded[: t.shape[0]] = t
        parts = [torch.empty_like(padded) for _ in range(self.size)]
        dist.all_gather(parts, padded)
        return torch.cat([p[: int(n)] for p, n in zip(parts, sizes)])

    def _broadcast(self, t, root):
        out = t.detach().clone()
        dist.broadcast(out, src=root)
        return out

    def _ibroadcast(self, t, root, name):
        out = t.detach().clone()
        work = dist.broadcast(out, src=root, async_op=True)
        return Pending(out, work.is_completed, lambda: (work.wait(), out)[1])

    def _alltoallv(self, t, splits):
        send = torch.tensor(splits, dtype=torch.int64)
        recv = torch.empty_like(send)
        dist.all_to_all_single(recv, send)
        recv_splits = [int(s) for s in recv]
        out = torch.empty((sum(recv_splits),) + tuple(t.shape[1:]), dtype=t.dtype)
        dist.all_to_all_single(out, t.contiguous(), recv_splits, splits)
        return out, recv_splits

    def _ialltoallv(self, t, splits, recv_splits):
        out = torch.empty((sum(recv_splits),) + tuple(t.shape[1:]), dtype=t.dtype)
        work = dist.all_to_all_single(out, t.contiguous(), recv_splits, splits, async_op=True)
        return Pending(out, work.is_completed, lambda: (work.wait(), out)[1])

    def _barrier(self):
        dist.barrier()

    def shutdown(self):
        if dist.is_initialized():
            dist.destroy_process_group()
