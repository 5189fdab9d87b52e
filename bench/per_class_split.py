"""Copy a raw graph with a per-class random split: ``--per-class`` training
nodes of every class, then ``--val`` and ``--test`` nodes drawn at random
from the rest (PyG Planetoid's split="random", the split the RETEXO
authors' prototype uses for Cora: 40 per class, 280, 2148). Only
split.npy changes; the copy is written under a temporary name and renamed.

    python bench/per_class_split.py --data work_data/bench/cora --out DIR/cora-r40 --per-class 40 --val 280 --test 2148
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
from grappa.graph.raw import SPLIT_TEST, SPLIT_TRAIN, SPLIT_VAL, RawGraph  # noqa: E402
from grappa.id_sets import setdiff  # noqa: E402


def per_class_split(y: np.ndarray, per_class: int, val: int, test: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    classes = np.unique(y[y >= 0])
    train = np.concatenate([rng.choice(np.flatnonzero(y == c), per_class, replace=False) for c in classes])
    rest = rng.permutation(setdiff(np.flatnonzero(y >= 0), train))
    split = np.zeros(len(y), np.uint8)
    split[train], split[rest[:val]], split[rest[val:val + test]] = SPLIT_TRAIN, SPLIT_VAL, SPLIT_TEST
    return split


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="raw graph directory (multiclass)")
    p.add_argument("--out", required=True, help="the copy with the new split (must not exist)")
    p.add_argument("--per-class", type=int, default=20, help="training nodes per class (default 20)")
    p.add_argument("--val", type=int, default=500, help="validation nodes (default 500)")
    p.add_argument("--test", type=int, default=1000, help="test nodes (default 1000)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    g = RawGraph(a.data).validate()
    y, out = np.asarray(g.y), Path(a.out)
    counts = np.bincount(y[y >= 0]) if g.info.task == "multiclass" else np.zeros(1, np.int64)
    if out.exists():
        fail(f"{out}: already exists (choose a new --out)")
    if counts.min() < a.per_class or (y >= 0).sum() < len(counts) * a.per_class + a.val + a.test:
        fail(f"{a.data}: a multiclass graph with {a.per_class} labelled nodes per class and {a.val} + {a.test} "
             "more is needed (lower --per-class, --val or --test)")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(a.data, tmp)
    np.save(tmp / "split.npy", per_class_split(y, a.per_class, a.val, a.test, a.seed))
    os.replace(tmp, out)
    print(f"{out}: {a.per_class} per class, {a.val} validation, {a.test} test (seed {a.seed})")


if __name__ == "__main__":
    main()
