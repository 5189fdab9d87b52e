"""Job scripts submitted for real to the local single-node Slurm."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time

import pytest
from conftest import ROOT

pytestmark = [pytest.mark.slurm,
              pytest.mark.skipif(shutil.which("sbatch") is None or "SLURM_CONF" not in os.environ,
                                 reason="local Slurm not started (run through hpc/run_tests.sh)")]


def wait_for(job_id: str, timeout: float = 600) -> str:
    """Poll scontrol (sbatch --wait is slow) until the job leaves PENDING/RUNNING."""
    end = time.time() + timeout
    while time.time() < end:
        out = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True).stdout
        m = re.search(r"JobState=(\w+)", out)
        if m and m.group(1) not in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING"):
            return m.group(1)
        time.sleep(0.5)
    subprocess.run(["scancel", job_id])
    raise TimeoutError(f"job {job_id} still running after {timeout} s")


def sbatch(script, tmp_path, **env) -> tuple[str, str]:
    exports = ",".join(["ALL", f"GRAPPA_ROOT={ROOT}"] + [f"{k}={v}" for k, v in env.items()])
    r = subprocess.run(["sbatch", "--parsable", f"--export={exports}", f"--output={tmp_path}/job-%j.out",
                        str(ROOT / "jobs" / script)], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    job = r.stdout.strip().split(";")[0]
    state = wait_for(job)
    return state, (tmp_path / f"job-{job}.out").read_text()


def test_sbatch_centralized_job_completes(tmp_path):
    out = tmp_path / "run"
    state, log = sbatch("train_centralized.slurm", tmp_path, DATA=tmp_path / "cora", OUT=out, EPOCHS=20)
    assert state == "COMPLETED", log
    result = json.loads((out / "result.json").read_text())
    assert result["dataset"] == "cora" and result["epochs"] == 20 and result["test_metric"] > 0.5


@pytest.mark.mpi
def test_sbatch_generic_train_job_makes_the_partition_the_method_needs(tmp_path):
    out = tmp_path / "run"
    state, log = sbatch("train.slurm", tmp_path, METHOD="psgd-pa", RANKS=2, RAW=tmp_path / "cora", OUT=out,
                        EPOCHS=5, EXTRA="--average-every-steps 1")
    assert state == "COMPLETED", log
    result = json.loads((out / "result.json").read_text())
    assert result["method"] == "psgd-pa" and result["partition_method"] == "metis" and result["num_chunks"] == 2
    assert (tmp_path / "cora-metis-k2" / "manifest.json").exists()
    assert set(result["train_bytes_by_category"]) == {"train_param"}
