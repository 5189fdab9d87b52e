#!/usr/bin/env python
"""Communication time per epoch predicted at scale (issue 28, item 6): halo
exchange and Grappa on the 96M-edge and the 1.07B-edge graphs at 16 to 1024
ranks (one a node) on 10 and 100 Gbit/s links, by grappa.analysis.comm_model,
the model docs/BENCHMARKS.md checks against the emulated network.

    python bench/comm_extrapolation.py --out bench_results/extrapolation.json

Assumptions (printed with the table): SAGE, hidden 64, 2 layers, the
generated graphs' 16 features and 2 classes; a node is spread at random over
the ranks for the halo (an upper bound: METIS cuts fewer edges on graphs with
community structure); ring allreduce (our cost model: 2 (P-1) rounds, which
large systems replace by trees); a round costs the link's round trip
(20 us at 10 Gbit/s, 5 us at 100 Gbit/s, typical of Ethernet and of
InfiniBand clusters); the mini-batch column also gives a tree allreduce's
2 log2 P rounds. Grappa mini-batch: one allreduce per global step of
1024 seeds over the graph's training nodes (the generator's 60% split).
Seconds, no compute: what the links cost, not the epoch.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from grappa.analysis.comm_model import FLOAT, allreduce_bytes, comm_time, random_boundary_rows
from grappa.models import build_model

GRAPHS = {"96M edges (SBM 4M nodes, degree 24)": (4_000_000, 24.0),
          "1.07B edges (SBM 8.4M nodes, degree 128)": (8_388_608, 128.0)}
LINKS = {"10 Gbit/s": (10e9, 20e-6), "100 Gbit/s": (100e9, 5e-6)}
RANKS = (16, 64, 256, 1024)
FEATURES, CLASSES, HIDDEN, LAYERS, BATCH, TRAIN_SHARE = 16, 2, 64, 2, 1024, 0.6


def predict(nodes: int, degree: float, p: int, rate: float, rtt: float, params: int) -> dict:
    grad_bytes, grad_rounds = allreduce_bytes(params + 2, p), 2 * (p - 1)
    dims = [FEATURES] + [HIDDEN] * (LAYERS - 1)
    rows = random_boundary_rows(nodes, degree, p)
    halo_bytes = FLOAT * rows * (sum(dims) + sum(dims[1:])) + grad_bytes
    halo_rounds = LAYERS + (LAYERS - 1) + grad_rounds  # an alltoallv per layer and direction
    steps = nodes * TRAIN_SHARE / BATCH
    return {"boundary_rows_per_rank": rows,
            "halo_s": comm_time(halo_bytes, halo_rounds, rate, rtt, p), "halo_bytes": halo_bytes,
            "grappa_full_graph_s": comm_time(grad_bytes, grad_rounds, rate, rtt, p), "grappa_bytes": grad_bytes,
            "grappa_minibatch_s": steps * comm_time(grad_bytes, grad_rounds, rate, rtt, p),
            # a tree allreduce (reduce + broadcast: 2 log2 P rounds), what large systems use
            "grappa_minibatch_tree_s": steps * comm_time(grad_bytes, 2 * (p - 1).bit_length(), rate, rtt, p),
            "minibatch_steps": steps}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", help="write the table's numbers here as JSON")
    a = p.parse_args(argv)
    params = sum(t.numel() for t in build_model("sage", FEATURES, HIDDEN, CLASSES, LAYERS).parameters())
    rows, lines = [], ["| graph | link | ranks | halo rows / rank | halo: bytes, time / epoch | Grappa full-graph: "
                       "bytes, time / epoch | Grappa mini-batch: time / epoch, ring (tree) allreduce; steps |",
                       "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for graph, (nodes, degree) in GRAPHS.items():
        for link, (rate, rtt) in LINKS.items():
            for ranks in RANKS:
                r = {"graph": graph, "link": link, "ranks": ranks, **predict(nodes, degree, ranks, rate, rtt, params)}
                rows.append(r)
                lines.append(f"| {graph} | {link} | {ranks} | {r['boundary_rows_per_rank']:,.0f} | "
                             f"{r['halo_bytes'] / 1e6:,.1f} MB, {1000 * r['halo_s']:,.1f} ms | "
                             f"{r['grappa_bytes'] / 1e3:,.1f} kB, {1000 * r['grappa_full_graph_s']:,.2f} ms | "
                             f"{r['grappa_minibatch_s']:,.2f} s ({r['grappa_minibatch_tree_s']:,.2f} s); "
                             f"{r['minibatch_steps']:,.0f} |")
    print(f"SAGE hidden {HIDDEN}, {LAYERS} layers, {FEATURES} features, {CLASSES} classes: {params:,} parameters\n")
    print("\n".join(lines))
    if a.out:
        Path(a.out).write_text(json.dumps({"params": params, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
