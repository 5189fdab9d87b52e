"""Run under mpirun: distributed layer-wise evaluation must equal a
centralized full-graph forward of the same model, node for node, also when a
streaming model (GCN, SAGE) receives its halo rows in blocks of 37.

    mpirun -np P python tests/mpi/eval_check.py DATASET RAW_GRAPH OUT_DIR MODEL:LAYERS [MODEL:LAYERS ...]

Each case writes OUT_DIR/MODEL-LAYERS/rank<R>.json.
"""
import json
import os
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

dataset, raw, out = sys.argv[1], sys.argv[2], sys.argv[3]
comm = make_comm("auto")
m = load_manifest(dataset)
sets = chunk_sets("shuffle", m["num_chunks"], comm.size, 3, seed=7)
local = load_chunk_set(dataset, sets[comm.rank])
plan = HaloPlan(comm, local, owner_of_chunks(sets, m["num_chunks"]), "setup")
g = load_graph(raw)
for case in sys.argv[4:]:
    model_name, layers = case.split(":")
    torch.manual_seed(0)
    model = build_model(model_name, m["num_features"], 16, m["num_classes"], int(layers), heads=2).eval()
    before = comm.counter.bytes["eval"]
    dist_logits = DistributedEvaluator(plan, local.x[: local.num_owned]).logits(model)
    with torch.no_grad():
        ref = model(g.x, g.edge_index)[torch.from_numpy(local.global_id[: local.num_owned])]
    small = DistributedEvaluator(plan, local.x[: local.num_owned], block_rows=37).logits(model)
    err = max(float((dist_logits - ref).abs().max()), float((small - ref).abs().max()))
    os.makedirs(f"{out}/{model_name}-{layers}", exist_ok=True)
    with open(f"{out}/{model_name}-{layers}/rank{comm.rank}.json", "w") as f:
        json.dump({"max_abs_err": err, "nodes": int(local.num_owned), "streams": model.streams,
                   "eval_bytes": comm.counter.bytes["eval"] - before,
                   "edge_index_built": plan._edge_index is not None}, f)
comm.shutdown()
