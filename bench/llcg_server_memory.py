#!/usr/bin/env python
"""LLCG's server never holds the whole graph: its memory against the size of
the graph's edge arrays.

Generates an SBM (or takes --raw), partitions it into --chunks random chunks
with the MPI partitioner, then measures two things:

1. the server alone, in a fresh process: RSS after the imports (the Python,
   torch and PyG baseline), then the peak while it opens the shards
   (``ShardGraph``) and takes --server-steps correction steps (sampling
   over the full graph, reading rows on demand, forward and backward);
2. LLCG for a few rounds in mini-batch mode on --ranks ranks: rank 0's peak
   RSS (worker + server + its share of the distributed evaluation; with
   --dedicated-server the server alone) and its peak before the final
   evaluation.

Prints a table against the raw edge arrays' bytes (edges_src.npy +
edges_dst.npy) and writes --out/llcg_server_memory.json.

    python bench/llcg_server_memory.py --num-nodes 1000000 --avg-degree 64 --ranks 4 --chunks 16 \\
        --dedicated-server --out bench_results/llcg-memory-dedicated
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))

from grappa.launch_env import local_mpirun  # noqa: E402


def sh(cmd: list[str]) -> None:
    print("[llcg-memory]", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def server_alone(shards: str, steps: int, batch: int) -> dict:
    """Phase 1, run in its own process (``--server-only``)."""
    import numpy as np
    import torch
    from grappa.graph.raw import SPLIT_TRAIN
    from grappa.memory import peak_rss_mb
    from grappa.models import build_model
    from grappa.sampling import NeighborSampler
    from grappa.shards.shard_graph import ShardGraph

    def rss_now() -> float:
        with open("/proc/self/status") as f:
            return next(int(x.split()[1]) for x in f if x.startswith("VmRSS:")) / 1024.0

    base = rss_now()
    t0 = time.perf_counter()
    g = ShardGraph(shards)
    sampler = NeighborSampler(g, [10, 10], 0)
    m = json.loads((Path(shards) / "manifest.json").read_text())
    model = build_model("gcn", m["num_features"], 16, m["num_classes"], 2, 0.5)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    rng = np.random.default_rng(0)
    for _ in range(steps):
        seeds = np.sort(rng.choice(g.num_nodes, batch, replace=False))
        seeds = seeds[g.node_rows(seeds, "split") == SPLIT_TRAIN]
        sub = sampler.sample(seeds)
        opt.zero_grad()
        out = model(torch.from_numpy(g.node_rows(sub.nodes, "x")), sub.edge_index)[: sub.num_seeds]
        torch.nn.functional.cross_entropy(out, torch.from_numpy(g.node_rows(seeds, "y"))).backward()
        opt.step()
    return {"baseline_rss_mb": base, "peak_rss_mb": peak_rss_mb(), "server_mb": peak_rss_mb() - base,
            "per_node_arrays_mb": (g.row_of.nbytes + g.indptr.nbytes + sampler._local.nbytes) / 2**20,
            "steps": steps, "shard_mb_read": g.bytes_read / 2**20, "time_s": time.perf_counter() - t0}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--raw", help="a raw graph directory (default: generate an SBM into --work)")
    p.add_argument("--num-nodes", type=int, default=1_000_000)
    p.add_argument("--avg-degree", type=float, default=64.0)
    p.add_argument("--num-features", type=int, default=8)
    p.add_argument("--chunks", type=int, default=16)
    p.add_argument("--ranks", type=int, default=4, help="ranks of the LLCG run; 0 = measure the server alone only")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--backend", default="auto", help="grappa-train --backend of the LLCG run (horovod, gloo)")
    p.add_argument("--dedicated-server", action="store_true",
                   help="rank 0 only corrects (LLCG --dedicated-server): its RSS is the server's")
    p.add_argument("--work", default="work_data/llcg-memory", help="graph and shards (reused when present)")
    p.add_argument("--server-steps", type=int, default=20, help="correction steps of the server-alone phase")
    p.add_argument("--out", required=True)
    p.add_argument("--server-only", metavar="SHARDS", help=argparse.SUPPRESS)  # phase 1's own process
    a = p.parse_args(argv)
    if a.server_only:
        print(json.dumps(server_alone(a.server_only, a.server_steps, 256)))
        return
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
    alone = json.loads(subprocess.run([sys.executable, __file__, "--server-only", str(shards), "--out", str(out),
                                       "--server-steps", str(a.server_steps)], check=True, capture_output=True,
                                      text=True).stdout)
    info = json.loads((raw / "graph.json").read_text())
    mb = sum((raw / f).stat().st_size for f in ("edges_src.npy", "edges_dst.npy")) / 2**20
    rows = [("server alone: baseline after imports", alone["baseline_rss_mb"]),
            (f"server alone: peak, {alone['steps']} correction steps", alone["peak_rss_mb"]),
            ("server alone: peak above the baseline", alone["server_mb"]),
            ("server alone: its per-node arrays", alone["per_node_arrays_mb"])]
    row = {"nodes": info["num_nodes"], "edges": info["num_edges"], "chunks": a.chunks, "ranks": a.ranks,
           "dedicated_server": a.dedicated_server, "backend": a.backend, "edge_arrays_mb": mb, "server_alone": alone}
    if a.ranks:
        row.update(llcg_run(a, shards, out))
        role = "server" if a.dedicated_server else "worker + server"
        rows += [(f"LLCG rank 0 ({role}): peak before the final evaluation",
                  row["rank0_peak_rss_mb_before_eval"]),
                 ("LLCG rank 0: peak with the final evaluation", row["rank0_peak_rss_mb"]),
                 ("LLCG largest rank: peak", row["max_rank_peak_rss_mb"])]
    print(f"graph: {row['nodes']:,} nodes, {row['edges']:,} edges, edge arrays {mb:,.0f} MB "
          f"(half: {mb / 2:,.0f} MB); {a.chunks} chunks, {a.ranks} ranks")
    print("| what | MB | / edge arrays |", "| --- | ---: | ---: |", sep="\n")
    for name, v in rows:
        print(f"| {name} | {v:,.0f} | {v / mb:.3f} |")
    out.mkdir(parents=True, exist_ok=True)
    (out / "llcg_server_memory.json").write_text(json.dumps({"args": vars(a), "result": row}, indent=2) + "\n")


def llcg_run(a, shards: Path, out: Path) -> dict:
    """Phase 2: LLCG on a.ranks ranks; rank 0's memory from result.json."""
    t0 = time.perf_counter()
    sh([*local_mpirun(a.ranks), sys.executable, "-m", "grappa.train", "--method", "llcg",
        "--data", str(shards), "--out", str(out / "run"), "--overwrite", "--no-progress", "--model", "gcn",
        "--hidden", "16", "--batch-size", "256", "--fanouts", "10", "10", "--local-steps", "4",
        "--epochs", str(a.rounds), "--eval-every", str(a.rounds), "--eval-batch-size", "4096",
        "--backend", a.backend, *(["--dedicated-server"] if a.dedicated_server else [])])
    wall = time.perf_counter() - t0
    res = json.loads((out / "run" / "result.json").read_text())
    return {"rank0_peak_rss_mb": res["server_peak_rss_mb"],
            "rank0_peak_rss_mb_before_eval": res["server_peak_rss_mb_training"],
            "max_rank_peak_rss_mb": res["peak_rss_mb_max"],
            "server_shard_mb_read": res["server_shard_bytes_read"] / 2**20,
            "server_correction_time_s": res["server_correction_time_s"], "rounds": res["rounds"],
            "train_wall_s": wall}


if __name__ == "__main__":
    main()
