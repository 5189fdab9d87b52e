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


def test_step_breakdown_times_each_phase_on_real_ranks(tmp_path, cora_k8):
    from conftest import run_mpi

    out = tmp_path / "step.json"
    r = run_mpi(2, ROOT / "bench/step_breakdown.py", "--data", cora_k8, "--out", out, "--seeds", "16", "--steps", "3")
    assert r.returncode == 0, r.stderr[-3000:]
    ranks = json.loads(out.read_text())["ranks"]
    assert [row["rank"] for row in ranks] == [0, 1]
    for row in ranks:
        phases = [row[f"{k}_ms"] for k in ("sample", "gather", "forward", "backward", "allreduce")]
        assert all(v > 0 for v in phases) and abs(sum(phases) - row["step_ms"]) < 1e-6
        assert row["in_set_edges"] > 0 and 16 < row["sampled_rows"] < 2708  # seeds plus their sampled neighbours
    assert "| 1 |" in r.stdout
