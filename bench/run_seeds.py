#!/usr/bin/env python
"""Run grappa-train configurations one after another in one launch.

    [mpirun -np P] python bench/run_seeds.py --out DIR --seeds 0 1 2 -- <grappa-train arguments>
    [mpirun -np P] python bench/run_seeds.py --plan plan.json

The first form runs one configuration for several seeds (DIR/seed-N); the
second runs a list of {"out": DIR, "args": [grappa-train arguments]}. The
runs share one process per rank and one communicator: starting P Python
processes with torch, PyG and Horovod costs several seconds on a small
machine, which would otherwise dominate a small graph's benchmark. Each run
still reports its own bytes (the counters restart) and its own peak RSS (the
peak is reset between runs, Linux). Inside an emulated cluster
(grappa.emulated_cluster sets GRAPPA_CLUSTER) each run also writes
wire.json: the bytes the nodes' links sent during the run against the bytes
the ranks counted (issue 28).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch
from grappa.comm import make_comm
from grappa.comm.base import SUM
from grappa.models import import_layers
from grappa.plugins import load_plugins
from grappa.train.cli import build_parser, config_from_args, run


def main(argv=None) -> None:
    load_plugins()  # methods and models of GRAPPA_PLUGINS modules (grappa.plugins)
    argv = sys.argv[1:] if argv is None else argv
    train_argv = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", help="directory for the seed-N run directories")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--plan", help="JSON list of {out, args} runs (instead of --out, --seeds and -- ARGS)")
    a = p.parse_args(argv)
    if a.plan:
        with open(a.plan) as f:
            plan = json.load(f)
    elif a.out:
        plan = [{"out": f"{a.out}/seed-{s}", "args": [*train_argv, "--seed", str(s)]} for s in a.seeds]
    else:
        p.error("give --plan, or --out with the grappa-train arguments after --")
    parser = build_parser()
    cfgs = [config_from_args(parser.parse_args([*r["args"], "--out", r["out"]])) for r in plan]
    import_layers()  # before the communicator starts (grappa.models.import_layers says why)
    comm = make_comm(cfgs[0].backend, cfgs[0].comm_timeout)
    try:
        for cfg in cfgs:
            before = node_tx_bytes(comm)
            run(cfg, comm)
            if before is not None:
                write_wire(comm, cfg.out, before)
    finally:
        comm.shutdown()


def node_tx_bytes(comm) -> int | None:
    """Bytes this node's eth0 has sent (one rank per node reads it); None outside a cluster."""
    if not os.environ.get("GRAPPA_CLUSTER"):
        return None
    return int(Path("/sys/class/net/eth0/statistics/tx_bytes").read_text()) if comm.local_rank == 0 else 0


def write_wire(comm, out, before: int) -> None:
    """The run's wire bytes (all nodes) beside its counted bytes (all ranks, every category)."""
    mine = torch.tensor([float(node_tx_bytes(comm) - before) if comm.local_rank == 0 else 0.0,
                         float(comm.counter.total())], dtype=torch.float64)
    wire, counted = comm.allreduce(mine, SUM, "control").tolist()
    if comm.rank == 0:
        (Path(out) / "wire.json").write_text(json.dumps({"wire_tx_bytes": wire, "counted_bytes": counted}) + "\n")


if __name__ == "__main__":
    main()
