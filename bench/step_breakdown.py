#!/usr/bin/env python
"""Where a Grappa mini-batch step's time goes, phase by phase, on each rank.

Every rank loads its chunk set of the first super-epoch (the sweep schedule,
as ``grappa-train --method grappa`` with an isolated set: no halo) and runs
--steps mini-batch steps of --seeds seeds drawn from its training nodes:
sample (the CSR sampler), gather (the sampled rows' features), forward (the
trimmed forward and the loss), backward, allreduce (the one gradient
allreduce, then the optimizer step; 1 rank: the step alone). The first 2 steps warm up and are
not counted. Prints a table (mean ms per step, one row per rank) and writes
--out as JSON.

    [mpirun -np P] python bench/step_breakdown.py --data SHARDS --out step.json [--seeds 256] [--steps 100]
    python bench/step_breakdown.py --data SHARDS --as-ranks 4 --out step.json   # rank 0's step alone

--seeds is the seeds of one rank's step: grappa-train's global batch B gives
each of P ranks about B / P.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from grappa.comm import BACKENDS, make_comm
from grappa.comm.base import threads_per_rank
from grappa.graph.raw import SPLIT_TRAIN
from grappa.models import MODELS, build_model, import_layers, sampled_forward
from grappa.sampling import NeighborSampler
from grappa.shards.assemble import load_chunk_set
from grappa.shards.format import load_manifest
from grappa.shards.schedule import chunk_sets
from grappa.train.gradients import allreduce_gradients

PHASES = ("sample", "gather", "forward", "backward", "allreduce")
WARM_UP = 2


def steps(a, comm, lg, model, opt) -> tuple[dict[str, float], float]:
    """Mean seconds per step of each phase over the counted steps, and the
    mean rows (nodes) of a step's sample."""
    train = np.flatnonzero(lg.split[: lg.num_owned] == SPLIT_TRAIN)
    sampler, rng = NeighborSampler(lg.csr, a.fanouts, seed=comm.rank), np.random.default_rng(comm.rank)
    params, total, rows = list(model.parameters()), dict.fromkeys(PHASES, 0.0), 0
    comm.barrier()
    for step in range(a.steps + WARM_UP):
        t = [time.perf_counter()]
        sub = sampler.sample(rng.choice(train, min(a.seeds, len(train)), replace=False))
        t.append(time.perf_counter())
        nodes = torch.from_numpy(sub.nodes)
        x = lg.x[nodes]
        t.append(time.perf_counter())
        loss = F.cross_entropy(sampled_forward(model, x, sub), lg.y[nodes[: sub.num_seeds]])
        t.append(time.perf_counter())
        opt.zero_grad()
        loss.backward()
        t.append(time.perf_counter())
        if comm.size > 1:
            allreduce_gradients(comm, params, [1.0])
        opt.step()
        t.append(time.perf_counter())
        if step >= WARM_UP:
            rows += len(sub.nodes)
            for name, lo, hi in zip(PHASES, t, t[1:]):
                total[name] += hi - lo
    return {name: v / a.steps for name, v in total.items()}, rows / a.steps


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="a partitioned dataset (grappa-partition's output)")
    p.add_argument("--out", type=Path, required=True, help="the JSON to write")
    p.add_argument("--seeds", type=int, default=256, help="seeds of one rank's step (default 256)")
    p.add_argument("--steps", type=int, default=100, help="steps counted (default 100)")
    p.add_argument("--fanouts", type=int, nargs="+", default=[10, 10], help="per layer (default 10 10)")
    p.add_argument("--model", choices=MODELS, default="sage")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--backend", choices=BACKENDS, default="auto")
    p.add_argument("--as-ranks", type=int, default=None,
                   help="load the chunk sets of this many ranks (default: the ranks running): one process "
                        "with --as-ranks 4 times rank 0's step of a 4-rank run alone, without the allreduce")
    a = p.parse_args(argv)
    import_layers()  # before the communicator starts (grappa.models.import_layers says why)
    comm = make_comm(a.backend)
    torch.set_num_threads(threads_per_rank())
    m = load_manifest(a.data)
    t0 = time.perf_counter()
    lg = load_chunk_set(a.data, chunk_sets("sweep", len(m["chunks"]), a.as_ranks or comm.size, 0, 0)[comm.rank],
                        hold_in_edges=False)
    load_s = time.perf_counter() - t0
    torch.manual_seed(0)  # the same replica on every rank
    model = build_model(a.model, m["num_features"], a.hidden, m["num_classes"], len(a.fanouts), 0.5)
    per_step, sampled = steps(a, comm, lg, model, torch.optim.Adam(model.parameters(), 0.01))
    mine = torch.tensor([[comm.rank, load_s, lg.csr.num_edges, sampled, *per_step.values()]], dtype=torch.float64)
    rows = [{"rank": int(r[0]), "load_s": float(r[1]), "in_set_edges": int(r[2]), "sampled_rows": float(r[3]),
             **{f"{k}_ms": 1e3 * float(v) for k, v in zip(PHASES, r[4:])}, "step_ms": 1e3 * float(r[4:].sum())}
            for r in comm.allgather(mine, "control")]
    if comm.rank == 0:
        print(f"{a.data}: P = {comm.size} (chunk sets of {a.as_ranks or comm.size}), {a.seeds} seeds a rank, "
              f"fan-outs {a.fanouts}, {a.model} {a.hidden}, "
              f"{a.steps} steps, ms per step")
        print("| rank | " + " | ".join(PHASES) + " | step | sampled rows | in-set edges | load |")
        print("| ---: " * (len(PHASES) + 5) + "|")
        for r in rows:
            print(f"| {r['rank']} | " + " | ".join(f"{r[k + '_ms']:.1f}" for k in PHASES)
                  + f" | {r['step_ms']:.1f} | {r['sampled_rows']:,.0f} | {r['in_set_edges']:,} | {r['load_s']:.1f} s |")
        tmp = a.out.with_name(a.out.name + ".tmp")
        tmp.write_text(json.dumps({"args": {k: str(v) for k, v in vars(a).items()}, "ranks": rows}, indent=1))
        tmp.replace(a.out)
    comm.shutdown()


if __name__ == "__main__":
    main()
