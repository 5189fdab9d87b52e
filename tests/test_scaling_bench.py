"""bench/scaling.py end to end on a small graph: real generator, mpirun
partitioner and mpirun Grappa ranks; the table has every phase."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import ROOT, mpi_env

pytestmark = pytest.mark.mpi


def test_scaling_bench_generates_partitions_and_trains(tmp_path):
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, str(ROOT / "bench/scaling.py"), "--work", str(tmp_path / "work"),
                        "--nodes", "3000", "--avg-degree", "8", "--chunks", "8", "--out", str(out)],
                       env=mpi_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    (row,) = json.loads((out / "scaling.json").read_text())
    assert row["nodes"] == 3000 and 23_000 < row["edges"] <= 24_000  # 2 x 12,000 pairs less self-loops
    assert set(row["peak_rss_mb_by_phase"]) >= {"setup", "repartition", "train", "eval"}
    assert row["epoch_s"] > 0 and row["eval_s"] > 0 and row["repartition_s"] > 0
    assert 0.0 <= row["test_metric"] <= 1.0 and row["metric"] == "accuracy"  # one step of 1,024 seeds: no more
    assert f"| {row['edges']:,} | 3,000 |" in (out / "scaling.md").read_text()
