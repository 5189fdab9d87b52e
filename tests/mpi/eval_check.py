"""Run under mpirun: distributed layer-wise evaluation must equal a
centralized full-graph forward of the same model, node for node, also when a
streaming model (GCN, SAGE) receives its halo rows in blocks of 37.

    mpirun -np P python tests/mpi/eval_check.py DATASET RAW_GRAPH OUT_DIR MODEL:LAYERS[:BLOCKS] ...

BLOCKS: "residual", a norm ("layer", "batch") or both ("residual+layer"):
the benchmark blocks of grappa.models.Blocks. Each case writes
OUT_DIR/MODEL-LAYERS[-BLOCKS]/rank<R>.json.
"""
import json
import os
import sys

import torch
from grappa.comm import make_comm
from grappa.models import build_model
from grappa.shards.assemble import ShardRows, load_chunk_set
from grappa.shards.format import load_manifest
from grappa.shards.schedule import chunk_sets, owner_of_chunks
from grappa.train.data import load_graph
from grappa.train.distributed_eval import DistributedEvaluator
from grappa.train.halo_exchange import HaloPlan

dataset, raw, out = sys.argv[1], sys.argv[2], sys.argv[3]
comm = make_comm("auto")
m = load_manifest(dataset)
sets = chunk_sets("shuffle", m["num_chunks"], comm.size, 3, seed=7)
local = load_chunk_set(dataset, sets[comm.rank])
plan = HaloPlan(comm, local, owner_of_chunks(sets, m["num_chunks"]), "setup")
# The same plan for a set that does not hold its in-edges: they are streamed from the shards.
lean = load_chunk_set(dataset, sets[comm.rank], hold_in_edges=False)
shard_plan = HaloPlan.from_shards(comm, lean, owner_of_chunks(sets, m["num_chunks"]), "setup",
                                  ShardRows(dataset, m, edge_block=100))
g = load_graph(raw)
for case in sys.argv[4:]:
    model_name, layers, *blocks = case.split(":")
    parts = blocks[0].split("+") if blocks else []
    norm = next((p for p in parts if p != "residual"), "none")
    torch.manual_seed(0)
    model = build_model(model_name, m["num_features"], 16, m["num_classes"], int(layers), heads=2,
                        residual="residual" in parts, norm=norm).eval()
    for mod in model.modules():  # batch norm: statistics that are not the identity
        if isinstance(mod, torch.nn.BatchNorm1d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
    name = "-".join([model_name, layers, *blocks])
    before = comm.counter.bytes["eval"]
    dist_logits = DistributedEvaluator(plan, local.x[: local.num_owned]).logits(model)
    with torch.no_grad():
        ref = model(g.x, g.edge_index)[torch.from_numpy(local.global_id[: local.num_owned])]
    small = DistributedEvaluator(plan, local.x[: local.num_owned], block_rows=37).logits(model)
    err = max(float((dist_logits - ref).abs().max()), float((small - ref).abs().max()))
    if model.streams:  # from the shards (streamed 100 in-edges at a time), in blocks of 37 rows
        streamed = DistributedEvaluator(shard_plan, lean.x[: lean.num_owned], block_rows=37).logits(model)
        err = max(err, float((streamed - ref).abs().max()))
    os.makedirs(f"{out}/{name}", exist_ok=True)
    with open(f"{out}/{name}/rank{comm.rank}.json", "w") as f:
        json.dump({"max_abs_err": err, "nodes": int(local.num_owned), "streams": model.streams,
                   "eval_bytes": comm.counter.bytes["eval"] - before,
                   "edge_index_built": plan._edge_index is not None}, f)
# An evaluator that frees the in-edges once its blocks are built gives the same
# logits, and refuses a model that would need them again.
torch.manual_seed(0)
model = build_model("sage", m["num_features"], 16, m["num_classes"], 2).eval()
keep = DistributedEvaluator(plan, local.x[: local.num_owned]).logits(model)
plan2 = HaloPlan(comm, local, owner_of_chunks(sets, m["num_chunks"]), "setup")
freed = DistributedEvaluator(plan2, local.x[: local.num_owned], release=lambda: (plan2.drop_edges(),
                                                                                 local.drop_in_edges()))
err = float((freed.logits(model) - keep).abs().max())
again = float((freed.logits(model) - keep).abs().max())
try:
    freed.logits(build_model("gat", m["num_features"], 16, m["num_classes"], 2, heads=2))
    refused = False
except RuntimeError:
    refused = True
with open(f"{out}/release-rank{comm.rank}.json", "w") as f:
    json.dump({"max_abs_err": max(err, again), "refused": refused,
               "freed": local.full_src_global is None and plan2.src_pos is None}, f)
comm.shutdown()
