"""The comparison benchmark, run as users run it on a cluster: sbatch jobs/bench.slurm."""
from __future__ import annotations

import json
import os
import shutil

import pytest
from test_slurm_jobs import sbatch

pytestmark = [pytest.mark.slurm, pytest.mark.mpi,
              pytest.mark.skipif(shutil.which("sbatch") is None or "SLURM_CONF" not in os.environ,
                                 reason="local Slurm not started (run through hpc/run_tests.sh)")]


def test_sbatch_bench_writes_table_plots_and_exact_bytes(tmp_path):
    out = tmp_path / "bench"
    state, log = sbatch("bench.slurm", tmp_path, PRESET="cora", RANKS=2, SEEDS=0, WORK=tmp_path / "work",
                        OUT=out, EXTRA="--epochs 10")
    assert state == "COMPLETED", log
    b = json.loads((out / "bench.json").read_text())
    s = b["summary"]
    assert list(s) == ["centralized", "halo", "grappa", "UW (uniform weights)", "FP (fixed partitions)"]
    assert all(len(b["runs"][n]) == 1 and b["runs"][n][0]["epochs_run"] == 10 for n in s)
    for row in s.values():
        for key in ("test_mean", "test_std", "epoch_time_s_median", "time_to_98pct_s_median",
                    "train_bytes_per_rank_per_epoch_by_category", "peak_rss_mb_per_rank_max"):
            assert key in row
    # Measured bytes equal the analytical model computed from the graph alone.
    pred = b["analytic"]
    assert s["grappa"]["train_bytes_per_rank_per_epoch"] == pytest.approx(pred["grappa_bytes_per_rank_per_epoch"])
    assert s["halo"]["train_bytes_per_rank_per_epoch"] == pytest.approx(pred["halo_bytes_per_rank_per_epoch"])
    assert s["centralized"]["train_bytes_per_rank_per_epoch"] == 0
    assert set(s["grappa"]["train_bytes_per_rank_per_epoch_by_category"]) == {"train_grad"}
    assert set(s["halo"]["train_bytes_per_rank_per_epoch_by_category"]) == {"train_grad", "train_feat",
                                                                            "train_act_grad"}
    md = (out / "bench.md").read_text()
    assert "| method |" in md and "analytical" in md
    for png in ("accuracy_vs_time.png", "bytes_per_epoch.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
