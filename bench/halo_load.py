#!/usr/bin/env python
"""Time what a rank reads of its halo from the shards (issue 29): the chunk
set with 0, 1 and L hops of exact halo, then halo groups at a budget (the
plan, and one epoch's group loads, or the first ``--groups``). One process,
rank 0's chunk set of P ranks; prints a table and writes JSON.

    python bench/halo_load.py --data SHARDS --ranks 4 --budget-mb 512 --fanouts 10 10 --out bench_results/halo_load.json
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from grappa.graph.raw import SPLIT_TRAIN
from grappa.memory import peak_rss_mb, reset_peak_rss
from grappa.shards.assemble import load_chunk_set
from grappa.shards.format import load_manifest
from grappa.shards.halo_groups import HaloGroups
from grappa.shards.schedule import chunk_sets


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def timed(fn):
    """(fn(), seconds, peak RSS MB while it ran, RSS MB when it started)."""
    reset_peak_rss()
    before, t = rss_mb(), time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t, peak_rss_mb(), before


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="a partitioned dataset directory")
    p.add_argument("--ranks", type=int, default=4, help="P: the chunk set is rank 0's of P (default 4)")
    p.add_argument("--budget-mb", type=float, default=512, help="the halo groups' budget (default 512)")
    p.add_argument("--fanouts", type=int, nargs="+", default=[10, 10], help="one per layer (default 10 10)")
    p.add_argument("--groups", type=int, default=0, help="group loads to time (default 0: one epoch's)")
    p.add_argument("--exact", action=argparse.BooleanOptionalAction, default=True,
                   help="also time the exact halo's loads (default on)")
    p.add_argument("--out", default="bench_results/halo_load.json")
    a = p.parse_args(argv)
    m = load_manifest(a.data)
    chunks = chunk_sets("sweep", m["num_chunks"], a.ranks, 0, 0)[0]
    rows = []
    print(f"{'load':<22} {'seconds':>8} {'held MB':>9} {'edges':>11} {'peak RSS MB':>12} {'RSS before':>11}")
    for hops in range(len(a.fanouts) + 1) if a.exact else [0]:
        lg, dt, peak, before = timed(lambda h=hops: load_chunk_set(a.data, chunks, h))
        held = sum(b for *_, b in lg.halo_read) / 2**20
        rows.append({"load": f"exact, {hops} hops", "s": dt, "held_mb": held, "edges": lg.csr.num_edges,
                     "peak_rss_mb": peak, "rss_before_mb": before})
        del lg
    base = load_chunk_set(a.data, chunks, 0)
    train = np.flatnonzero(base.split == SPLIT_TRAIN)
    rng = np.random.default_rng(0)
    groups, dt, peak, before = timed(lambda: HaloGroups.plan(a.data, base, a.fanouts, a.budget_mb * 2**20, train, rng))
    rows.append({"load": "groups: plan", "s": dt, "held_mb": 0.0, "edges": 0, "peak_rss_mb": peak,
                 "rss_before_mb": before, "seeds_per_group": groups.seeds_per_group, "train_nodes": len(train)})
    order, size = rng.permutation(train), groups.seeds_per_group
    starts = list(range(0, len(order), size))[: a.groups or None]
    for i, lo in enumerate(starts):
        lg = None  # the previous group goes first, as in training
        lg, dt, peak, before = timed(lambda s=lo: groups.load(np.sort(order[s:s + size]), np.random.default_rng(s)))
        rows.append({"load": f"groups: group {i}", "s": dt, "held_mb": sum(b for *_, b in lg.halo_read) / 2**20,
                     "edges": lg.csr.num_edges, "peak_rss_mb": peak, "rss_before_mb": before})
    for r in rows:
        print(f"{r['load']:<22} {r['s']:>8.2f} {r['held_mb']:>9.1f} {r['edges']:>11,} {r['peak_rss_mb']:>12.0f} "
              f"{r['rss_before_mb']:>11.0f}")
    loads = [r["s"] for r in rows if r["load"].startswith("groups: group")]
    print(f"groups: {size} seeds each of {len(train)}, {len(loads)} loads, {sum(loads):.2f} s in all")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"data": str(a.data), "ranks": a.ranks, "budget_mb": a.budget_mb,
                               "fanouts": a.fanouts, "rows": rows}, indent=2) + "\n")
    print(f"-> {out}")


if __name__ == "__main__":
    main()
