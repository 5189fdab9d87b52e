#!/usr/bin/env python
"""LLCG's server never holds the whole graph: rank 0's peak RSS against the
size of the graph's edge arrays.

Generates an SBM (or takes --raw), partitions it into --chunks random chunks
with the MPI partitioner, trains LLCG for a few rounds in mini-batch mode on
--ranks ranks, and prints one table row: edges, the raw edge arrays' bytes
(edges_src.npy + edges_dst.npy), rank 0's peak RSS (worker + server), the
largest rank's, the shard bytes the server read and its correction time.
Writes --out/llcg_server_memory.json.

    python bench/llcg_server_memory.py --num-nodes 1000000 --avg-degree 160 --ranks 16 --chunks 16 \\
        --work /tmp/llcg-mem --out bench_results/llcg-memory
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def sh(cmd: list[str]) -> None:
    print("[llcg-memory]", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--raw", help="a raw graph directory (default: generate an SBM into --work)")
    p.add_argument("--num-nodes", type=int, default=1_000_000)
    p.add_argument("--avg-degree", type=float, default=160.0)
    p.add_argument("--num-features", type=int, default=8)
    p.add_argument("--chunks", type=int, default=16)
    p.add_argument("--ranks", type=int, default=16)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--work", default="work_data/llcg-memory", help="graph and shards (reused when present)")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    work, out = Path(a.work), Path(a.out)
    work.mkdir(parents=True, exist_ok=True)
    raw = Path(a.raw) if a.raw else work / f"sbm-{a.num_nodes}-d{a.avg_degree:g}"
    if not (raw / "graph.json").exists():
        sh([sys.executable, "-m", "grappa.graph.generators_cli", "sbm", "--num-nodes", str(a.num_nodes),
            "--avg-degree", str(a.avg_degree), "--num-features", str(a.num_features), "--quiet", "--overwrite",
            "--out", str(raw)])
    shards = work / f"{raw.name}-random-k{a.chunks}"
    if not (shards / "manifest.json").exists():
        sh(["mpirun", "-np", "2", "--oversubscribe", sys.executable, str(ROOT / "data_prep/partition.py"),
            "--data", str(raw), "--out", str(shards), "--num-chunks", str(a.chunks), "--overwrite",
            "--no-progress"])
    t0 = time.perf_counter()
    sh(["mpirun", "-np", str(a.ranks), "--oversubscribe", sys.executable, "-m", "grappa.train", "--method", "llcg",
        "--data", str(shards), "--out", str(out / "run"), "--overwrite", "--no-progress", "--model", "gcn",
        "--hidden", "16", "--batch-size", "256", "--fanouts", "10", "10", "--local-steps", "4",
        "--epochs", str(a.rounds), "--eval-every", str(a.rounds), "--eval-batch-size", "4096"])
    wall = time.perf_counter() - t0
    res = json.loads((out / "run" / "result.json").read_text())
    info = json.loads((raw / "graph.json").read_text())
    edge_bytes = sum((raw / f).stat().st_size for f in ("edges_src.npy", "edges_dst.npy"))
    row = {"nodes": info["num_nodes"], "edges": info["num_edges"], "chunks": a.chunks, "ranks": a.ranks,
           "edge_arrays_mb": edge_bytes / 2**20, "rank0_peak_rss_mb": res["server_peak_rss_mb"],
           "max_rank_peak_rss_mb": res["peak_rss_mb_max"],
           "rank0_over_edge_arrays": res["server_peak_rss_mb"] / (edge_bytes / 2**20),
           "server_shard_mb_read": res["server_shard_bytes_read"] / 2**20,
           "server_correction_time_s": res["server_correction_time_s"], "rounds": res["rounds"],
           "train_wall_s": wall}
    head = ("| nodes | edges | chunks | ranks | edge arrays | rank 0 peak RSS | ratio | max rank RSS "
            "| server read | correction time |")
    line = (f"| {row['nodes']:,} | {row['edges']:,} | {a.chunks} | {a.ranks} | {row['edge_arrays_mb']:,.0f} MB "
            f"| {row['rank0_peak_rss_mb']:,.0f} MB | {row['rank0_over_edge_arrays']:.2f} "
            f"| {row['max_rank_peak_rss_mb']:,.0f} MB | {row['server_shard_mb_read']:,.1f} MB "
            f"| {row['server_correction_time_s']:.1f} s |")
    print(head, "| --- " * 10 + "|", line, sep="\n")
    (out / "llcg_server_memory.json").write_text(json.dumps({"args": vars(a), "result": row}, indent=2) + "\n")


if __name__ == "__main__":
    main()
