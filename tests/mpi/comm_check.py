"""Run under mpirun: exercise every collective and dump results + byte counters.

    mpirun -np 4 python tests/mpi/comm_check.py BACKEND OUT_DIR
"""
import json
import sys

import torch
from grappa.comm import AVERAGE, MAX, make_comm

backend, out = sys.argv[1], sys.argv[2]
comm = make_comm(backend)
r, p = comm.rank, comm.size
res = {"rank": r, "size": p, "backend": comm.name}

t = torch.arange(10, dtype=torch.float32) + r  # 40 bytes
res["allreduce_sum"] = comm.allreduce(t, category="a").tolist()
res["allreduce_avg"] = comm.allreduce(t, AVERAGE, category="a").tolist()
res["allreduce_max"] = comm.allreduce(torch.tensor([float(r)]), MAX, category="b").tolist()
summed, scalars = comm.allreduce_carrying(t, [float(r), 1.0], category="g")  # 2 float32 scalars ride along
res["carrying"], res["carrying_scalars"] = summed.tolist(), scalars.tolist()
g = torch.full((r + 1, 3), float(r), dtype=torch.float64)  # (r+1)*24 bytes
res["allgather"] = comm.allgather(g, category="c").tolist()
b = torch.tensor([7.0, 8.0]) if r == 0 else torch.zeros(2)
res["broadcast"] = comm.broadcast(b, root=0, category="d").tolist()
# rank r sends j+1 rows of [r, j] to rank j (int64 rows of 2 -> 16 bytes each)
splits = [j + 1 for j in range(p)]
rows = torch.tensor([[r, j] for j in range(p) for _ in range(j + 1)], dtype=torch.int64)
recv, recv_splits = comm.alltoallv(rows, splits, category="e")
res["alltoallv"] = recv.tolist()
res["alltoallv_splits"] = recv_splits
pending = comm.ialltoallv(rows, splits, [r + 1] * p, category="f")  # rank q sends r+1 rows here
res["ialltoallv"] = pending.wait().tolist()
comm.barrier()
res["bytes"] = comm.counter.snapshot()
res["rounds"] = dict(comm.counter.rounds)
res["seconds"] = dict(comm.counter.seconds)
with open(f"{out}/rank{r}.json", "w") as f:
    json.dump(res, f)
comm.shutdown()
