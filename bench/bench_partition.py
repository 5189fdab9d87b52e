#!/usr/bin/env python
"""Benchmark the offline MPI partitioner on RMAT graphs of growing scale.

For every scale: generate RMAT (edge factor 16, no node features), then
partition it with N = 1, 2, 4 ranks (real mpirun). Reports wall time, edges
per second per rank and peak RSS per rank (all from the job's own manifest),
prints a table and writes JSON.

    python bench/bench_partition.py --scales 18 20 22 24 --ranks 1 2 4 --out bench_results/partition.json
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(cmd: list[str]) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{r.stderr[-3000:]}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scales", type=int, nargs="+", default=[18, 20, 22, 24])
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--num-chunks", type=int, default=16)
    p.add_argument("--memory-budget", type=int, default=512, help="MB per rank")
    p.add_argument("--work", default="/tmp/grappa-bench-partition", help="scratch directory (needs disk)")
    p.add_argument("--keep", action="store_true", help="keep generated graphs and shards")
    p.add_argument("--out", default="bench_results/partition.json")
    a = p.parse_args(argv)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    print(f"{'scale':>5} {'edges':>12} {'ranks':>5} {'wall s':>8} {'Medges/s/rank':>14} {'peak RSS MB/rank':>17}")
    for scale in a.scales:
        graph = work / f"rmat{scale}"
        if not (graph / "graph.json").exists():
            t0 = time.perf_counter()
            run([sys.executable, "-m", "grappa.graph.generators_cli", "rmat", "--scale", str(scale),
                 "--num-features", "0", "--quiet", "--overwrite", "--out", str(graph)])
            print(f"  (generated rmat{scale} in {time.perf_counter() - t0:.1f} s)")
        for n in a.ranks:
            out = work / f"rmat{scale}-p{n}"
            run(["mpirun", "-np", str(n), "--oversubscribe", sys.executable, str(ROOT / "data_prep/partition.py"),
                 "--data", str(graph), "--out", str(out), "--num-chunks", str(a.num_chunks),
                 "--memory-budget", str(a.memory_budget), "--overwrite", "--no-progress"])
            m = json.loads((out / "manifest.json").read_text())
            cb = m["created_by"]
            row = {"scale": scale, "edges": m["num_edges"], "ranks": n, "num_chunks": a.num_chunks,
                   "memory_budget_mb": a.memory_budget, "wall_s": cb["wall_s"],
                   "edges_per_s_per_rank": m["num_edges"] / cb["wall_s"] / n,
                   "peak_rss_mb_per_rank": max(cb["peak_rss_mb_per_rank"]),
                   "shard_bytes": sum(f["size"] for f in m["files"])}
            rows.append(row)
            print(f"{scale:>5} {row['edges']:>12} {n:>5} {row['wall_s']:>8.1f} "
                  f"{row['edges_per_s_per_rank'] / 1e6:>14.2f} {row['peak_rss_mb_per_rank']:>17.0f}", flush=True)
            if not a.keep:
                shutil.rmtree(out)
        if not a.keep:
            shutil.rmtree(graph)
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    meta = {"machine": {"cpus": os.cpu_count(), "uname": " ".join(os.uname())}, "rows": rows}
    Path(a.out).write_text(json.dumps(meta, indent=2) + "\n")


if __name__ == "__main__":
    main()
