#!/usr/bin/env python
"""Benchmark the streaming generators: wall time, edges/s and peak RSS per run.

Each configuration runs in a fresh process so peak RSS is its own.

    python bench/bench_generators.py --out bench_results/generators.json
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time

CASES = {
    "sbm-100k": ["sbm", "--num-nodes", "100000", "--avg-degree", "20"],
    "sbm-1M": ["sbm", "--num-nodes", "1000000", "--avg-degree", "20"],
    "rmat-18": ["rmat", "--scale", "18"],
    "rmat-20": ["rmat", "--scale", "20"],
    "rmat-22": ["rmat", "--scale", "22"],
}
CHILD = ("import resource, sys, json; from grappa.graph.generators_cli import main; "
         "main(sys.argv[1:] + ['--quiet']); "
         "print('RSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")


def run_case(args: list[str], out_dir: str) -> dict:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", CHILD, *args, "--out", out_dir], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode:
        raise RuntimeError(r.stderr)
    info = json.load(open(f"{out_dir}/graph.json"))
    rss = int(r.stdout.split("RSS")[-1]) / 1024
    return {"nodes": info["num_nodes"], "edges": info["num_edges"], "wall_s": wall,
            "edges_per_s": info["num_edges"] / wall, "peak_rss_mb": rss}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    p.add_argument("--out", default="bench_results/generators.json")
    a = p.parse_args(argv)
    rows = {}
    print(f"{'case':<10} {'nodes':>10} {'edges':>12} {'wall s':>8} {'Medges/s':>9} {'peak RSS MB':>12}")
    for name in a.cases:
        tmp = tempfile.mkdtemp(prefix="grappa-bench-")
        try:
            row = run_case(CASES[name], f"{tmp}/g")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        rows[name] = row
        print(f"{name:<10} {row['nodes']:>10} {row['edges']:>12} {row['wall_s']:>8.2f} "
              f"{row['edges_per_s'] / 1e6:>9.2f} {row['peak_rss_mb']:>12.0f}")
    import os

    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
