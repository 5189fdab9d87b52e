"""Run under mpirun: distributed layer-wise evaluation must equal a
centralized full-graph forward of the same model, node for node.

    mpirun -np P python tests/mpi/eval_check.py DATASET RAW_GRAPH MODEL LAYERS OUT_DIR
"""
import json
import sys

import torch
from grappa.comm import make_comm
from grappa.models import build_model
from grappa.partition.schedule import chunk_sets, owner_of_chunks
from grappa.shards.assemble import load_chunk_set
from grappa.shards.format import load_manifest
from grappa.train.data import load_graph
from grappa.train.distributed_eval import DistributedEvaluator
from grappa.train.halo_exchange import HaloPlan

dataset, raw, model_name, layers, out = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
comm = make_comm("auto")
m = load_manifest(dataset)
torch.manual_seed(0)
model = build_model(model_name, m["num_features"], 16, m["num_classes"], layers, heads=2).eval()
sets = chunk_sets("shuffle", m["num_chunks"], comm.size, 3, seed=7)
local = load_chunk_set(dataset, sets[comm.rank])
plan = HaloPlan(comm, local, owner_of_chunks(sets, m["num_chunks"]), "eval")
dist_logits = DistributedEvaluator(plan, local.x[: local.num_owned]).logits(model)
g = load_graph(raw)
with torch.no_grad():
    ref = model(g.x, g.edge_index)[torch.from_numpy(local.global_id[: local.num_owned])]
err = float((dist_logits - ref).abs().max())
with open(f"{out}/rank{comm.rank}.json", "w") as f:
    json.dump({"max_abs_err": err, "nodes": int(local.num_owned), "eval_bytes": comm.counter.bytes["eval"]}, f)
comm.shutdown()
