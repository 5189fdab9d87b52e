"""bench/per_class_split.py (the RETEXO authors' Cora split: 40 per class, 280, 2148) and bench/retexo_sweep.py."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
from conftest import ROOT, mpi_env
from grappa.graph.raw import SPLIT_TEST, SPLIT_TRAIN, SPLIT_VAL, RawGraph

SCRIPT = ROOT / "bench/per_class_split.py"


def split_copy(*args):
    return subprocess.run([sys.executable, SCRIPT, *map(str, args)], env=mpi_env(), capture_output=True, text=True)


def test_per_class_split_copies_the_graph_with_the_new_split(cora_dir, tmp_path):
    out = tmp_path / "r40"
    r = split_copy("--data", cora_dir, "--out", out, "--per-class", 40, "--val", 280, "--test", 2148, "--seed", 3)
    assert r.returncode == 0, r.stderr
    g, y = RawGraph(out).validate(), np.load(cora_dir / "y.npy")
    split = np.asarray(g.split)
    assert np.array_equal(np.bincount(y[split == SPLIT_TRAIN]), [40] * 7)
    assert [(split == c).sum() for c in (SPLIT_VAL, SPLIT_TEST)] == [280, 2148]
    for name in ("x.npy", "y.npy", "edges_src.npy", "edges_dst.npy"):
        assert (out / name).read_bytes() == (cora_dir / name).read_bytes()
    again = tmp_path / "again"
    assert split_copy("--data", cora_dir, "--out", again, "--per-class", 40, "--val", 280, "--test", 2148,
                      "--seed", 3).returncode == 0
    assert np.array_equal(np.load(again / "split.npy"), split)  # the seed fixes it
    r = split_copy("--data", cora_dir, "--out", out)
    assert r.returncode == 2 and "already exists" in r.stderr
    r = split_copy("--data", cora_dir, "--out", tmp_path / "x", "--per-class", 900)
    assert r.returncode == 2 and "--per-class" in r.stderr and not (tmp_path / "x").exists()


def test_retexo_sweep_runs_the_stages_and_writes_json(cora_dir, tmp_path):
    """bench/retexo_sweep.py (one-process RETEXO stages): a short setting per model, each a real accuracy."""
    out = tmp_path / "sweep.json"
    r = subprocess.run([sys.executable, ROOT / "bench/retexo_sweep.py", "--data", cora_dir, "--out", out, "--seeds",
                        "0", "--set", '{"rounds": 60, "hidden": 64}', "--set",
                        '{"rounds": 60, "hidden": 64, "model": "sage"}'],
                       env=mpi_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    import json
    rows = json.loads(out.read_text())
    assert [row["setting"]["model"] for row in rows] == ["gcn", "sage"]
    assert all(60 < row["test_mean"] <= 100 for row in rows), rows  # trained: 7 classes, chance ~14-30%
