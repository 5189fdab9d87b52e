"""Run under mpirun: batch norm's running statistics, averaged over the ranks
by grappa.train.loop.sync_norm_statistics (eval bytes).

    mpirun -np P python tests/mpi/norm_sync_check.py OUT_DIR
"""
import json
import sys

import torch
from grappa.comm import make_comm
from grappa.models import build_model
from grappa.train.loop import sync_norm_statistics

comm = make_comm("auto")
model = build_model("sage", 4, 8, 2, 2, norm="batch")
for m in model.modules():
    if isinstance(m, torch.nn.BatchNorm1d):
        m.running_mean.fill_(float(comm.rank))
        m.running_var.fill_(1.0 + 2.0 * comm.rank)
sync_norm_statistics(comm, model)
bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)]
with open(f"{sys.argv[1]}/rank{comm.rank}.json", "w") as f:
    json.dump({"means": [m.running_mean.tolist() for m in bns], "vars": [m.running_var.tolist() for m in bns],
               "eval_bytes": comm.counter.bytes.get("eval", 0), "norms": len(bns)}, f)
