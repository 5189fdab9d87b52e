#!/usr/bin/env python
"""Grappa against centralized training, with its ablations, on one graph.

Runs, for each seed: centralized (one process), grappa (P ranks), FP (fixed
partitions: never repartition) and UW (uniform weights), all with the same
model, epochs and hyper-parameters; prints a table (mean +- std over seeds)
and writes JSON.

    python bench/compare_grappa.py --raw work_data/cora --dataset work_data/cora-k16 --ranks 4 \\
        --seeds 0 1 2 --out bench_results/cora_grappa.json -- --model gcn --epochs 200
Arguments after `--` go to every grappa-train run.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

VARIANTS = {
    "grappa": [],
    "FP (fixed partitions)": ["--schedule", "fixed"],
    "UW (uniform weights)": ["--weighting", "uniform"],
}


def train(args: list[str], ranks: int | None, out: Path) -> dict:
    cmd = [sys.executable, "-m", "grappa.train", *args, "--out", str(out), "--overwrite", "--no-progress"]
    if ranks:
        cmd = ["mpirun", "-np", str(ranks), "--oversubscribe", *cmd]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"{' '.join(cmd)}\n{r.stderr[-3000:]}")
    return json.loads((out / "result.json").read_text())


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--raw", required=True, help="raw graph (centralized)")
    p.add_argument("--dataset", required=True, help="partitioned dataset (grappa)")
    p.add_argument("--ranks", type=int, default=4)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--grappa-args", default="--schedule shuffle --repartition-every 5",
                   help="extra flags for the full grappa method (ablations override one of them)")
    p.add_argument("--out", default="bench_results/grappa_compare.json")
    a = p.parse_args(argv)
    base = a.grappa_args.split()
    runs: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in a.seeds:
            s = ["--seed", str(seed), *extra]
            runs.setdefault("centralized", []).append(
                train(["--data", a.raw, "--method", "centralized", *s], None, Path(tmp) / f"c{seed}"))
            for name, flags in VARIANTS.items():
                args = ["--data", a.dataset, "--method", "grappa", *s, *base, *flags]
                runs.setdefault(name, []).append(train(args, a.ranks, Path(tmp) / f"{len(runs)}-{seed}"))
    table = {}
    print(f"{'method':<24} {'test metric':>16} {'epoch ms':>9} {'train B/rank/epoch':>19} {'peak RSS MB':>12}")
    for name, rs in runs.items():
        accs = [r["test_metric"] for r in rs]
        row = {"test_mean": statistics.mean(accs), "test_std": statistics.pstdev(accs), "tests": accs,
               "epoch_time_s_median": statistics.median(r["epoch_time_s_median"] for r in rs),
               "train_bytes_per_rank_per_epoch": rs[0]["train_bytes_per_rank_per_epoch"],
               "peak_rss_mb_max": max(r["peak_rss_mb_max"] for r in rs), "world_size": rs[0]["world_size"]}
        table[name] = row
        print(f"{name:<24} {100 * row['test_mean']:>9.2f} +- {100 * row['test_std']:.2f} "
              f"{1000 * row['epoch_time_s_median']:>9.1f} {row['train_bytes_per_rank_per_epoch']:>19,.0f} "
              f"{row['peak_rss_mb_max']:>12.0f}")
    gap = table["grappa"]["test_mean"] - table["centralized"]["test_mean"]
    print(f"grappa - centralized: {100 * gap:+.2f} points")
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    Path(a.out).write_text(json.dumps({"args": vars(a), "train_args": extra, "results": table}, indent=2) + "\n")


if __name__ == "__main__":
    main()
