#!/usr/bin/env python
"""Scaling: generate, partition and train Grappa on SBM graphs of growing size.

For each --nodes N: an SBM with N nodes, --avg-degree in-edges per node, 16
features, 8 classes (grappa-generate sbm), partitioned into --chunks chunks
by --partition-ranks ranks, then Grappa with P = --ranks in mini-batch mode
(SAGE, hidden 64, global batch 1024, fan-outs 10,10) for one epoch and one
full-neighbour evaluation. Existing graphs and partitions under --work are
reused (delete them to re-measure those steps). Writes, in --out:

    scaling.json   every size's figures (generation, partition, training)
    scaling.md     the table

    python bench/scaling.py --work /tmp/scaling --nodes 83886 838861 --out bench_results/scaling
    python bench/scaling.py --work /tmp/billion --nodes 8388608 --out /tmp/billion/results   # 1.07B edges

Needs about 56 bytes of disk per edge at the peak of the largest size (raw
edges, the partitioner's spill files and the shards).
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

PHASES = ("setup", "repartition", "train", "eval", "checkpoint")
TRAIN = ["--method", "grappa", "--model", "sage", "--hidden", "64", "--batch-size", "1024", "--fanouts", "10", "10",
         "--epochs", "1", "--eval-every", "1", "--no-progress", "--overwrite"]


def timed(cmd: list[str]) -> float:
    print("[scaling] " + " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    return time.perf_counter() - t0


def measure(a, nodes: int) -> dict:
    raw, parts, run = a.work / f"sbm{nodes}-d{a.avg_degree:g}", a.work / f"sbm{nodes}-d{a.avg_degree:g}-k{a.chunks}", \
        a.work / f"run-sbm{nodes}"
    row = {"nodes": nodes, "avg_degree": a.avg_degree, "chunks": a.chunks, "ranks": a.ranks}
    if not (raw / "graph.json").exists():
        row["generate_s"] = timed([sys.executable, "-m", "grappa.graph.generators_cli", "sbm", "--out", str(raw),
                                   "--num-nodes", str(nodes), "--avg-degree", str(a.avg_degree), "--num-features",
                                   "16", "--homophily", "0.6", "--quiet", "--overwrite"])
    if not (parts / "manifest.json").exists():
        timed(["mpirun", "-np", str(a.partition_ranks), sys.executable, "data_prep/partition.py", "--data", str(raw),
               "--out", str(parts), "--num-chunks", str(a.chunks), "--memory-budget", str(a.memory_budget),
               "--no-progress", "--overwrite"])
    m = json.loads((parts / "manifest.json").read_text())
    row.update(edges=m["num_edges"], partition_s=m["created_by"]["wall_s"],
               partition_peak_rss_mb=max(m["created_by"]["peak_rss_mb_per_rank"]))
    row["train_wall_s"] = timed([*local_mpirun(a.ranks), sys.executable, "-m", "grappa.train", "--data",
                                 str(parts), "--out", str(run), *TRAIN])
    r = json.loads((run / "result.json").read_text())
    row.update(epoch_s=r["epoch_time_s_median"], eval_s=r["eval_time_s_median"],
               repartition_s=r["switch_time_s_total"], halo_hops_read=r["halo_hops_read"],
               peak_rss_mb_by_phase=r["peak_rss_mb_by_phase"], peak_rss_mb=r["peak_rss_mb_max"],
               test_metric=r["test_metric"], metric=r["metric"])
    return row


def table(rows: list[dict]) -> str:
    head = ("| edges | nodes | partition (2 ranks) | repartition | epoch | evaluation | "
            + " | ".join(f"peak RSS {p}" for p in PHASES) + " | peak RSS / rank | test accuracy |")
    lines = [head, "| " + " | ".join(["---:"] * (len(PHASES) + 8)) + " |"]
    for r in rows:
        by = r["peak_rss_mb_by_phase"]
        lines.append(f"| {r['edges']:,} | {r['nodes']:,} | {r['partition_s']:.1f} s | {r['repartition_s']:.1f} s | "
                     f"{r['epoch_s']:.1f} s | {r['eval_s']:.1f} s | "
                     + " | ".join(f"{by[p]:,.0f} MB" if p in by else "-" for p in PHASES)
                     + f" | {r['peak_rss_mb']:,.0f} MB | {100 * r['test_metric']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, nargs="+", required=True, help="graph sizes (nodes), one run each")
    p.add_argument("--avg-degree", type=float, default=128.0, help="in-edges per node (default 128)")
    p.add_argument("--chunks", type=int, default=16, help="K, chunks of the partition (default 16)")
    p.add_argument("--ranks", type=int, default=4, help="P, training ranks (default 4)")
    p.add_argument("--partition-ranks", type=int, default=2, help="ranks of the partitioning job (default 2)")
    p.add_argument("--memory-budget", type=int, default=1024, help="partitioner's MB per rank (default 1024)")
    p.add_argument("--work", type=Path, required=True, help="graphs, partitions and runs (reused)")
    p.add_argument("--out", type=Path, required=True, help="scaling.json and scaling.md")
    a = p.parse_args(argv)
    a.work.mkdir(parents=True, exist_ok=True)
    rows = [measure(a, n) for n in a.nodes]
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "scaling.json").write_text(json.dumps(rows, indent=2) + "\n")
    md = table(rows)
    (a.out / "scaling.md").write_text(f"Command: `python bench/scaling.py {' '.join(sys.argv[1:])}`\n\n" + md)
    print(md)


if __name__ == "__main__":
    main()
