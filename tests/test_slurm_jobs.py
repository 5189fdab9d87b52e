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


def submit(script, tmp_path, **env) -> str:
    exports = ",".join(["ALL", f"GRAPPA_ROOT={ROOT}"] + [f"{k}={v}" for k, v in env.items()])
    r = subprocess.run(["sbatch", "--parsable", f"--export={exports}", f"--output={tmp_path}/job-%j.out",
                        str(ROOT / "jobs" / script)], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip().split(";")[0]


def sbatch(script, tmp_path, **env) -> tuple[str, str]:
    job = submit(script, tmp_path, **env)
    state = wait_for(job)
    return state, (tmp_path / f"job-{job}.out").read_text()


def job_field(job_id: str, name: str) -> str:
    out = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True).stdout
    m = re.search(rf"\b{name}=(\S+)", out)
    return m.group(1) if m else ""


def poll(condition, timeout: float, what: str, job_id: str):
    end = time.time() + timeout
    while time.time() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    subprocess.run(["scancel", job_id])
    raise TimeoutError(f"job {job_id}: {what} not seen within {timeout} s")


def test_sbatch_centralized_job_completes(cora_dir, tmp_path):
    out = tmp_path / "run"
    state, log = sbatch("train_centralized.slurm", tmp_path, DATA=cora_dir, OUT=out, EPOCHS=20)
    assert state == "COMPLETED", log
    result = json.loads((out / "result.json").read_text())
    assert result["dataset"] == "cora" and result["epochs"] == 20 and result["test_metric"] > 0.5


@pytest.mark.mpi
def test_sbatch_generic_train_job_makes_the_partition_the_method_needs(cora_dir, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(cora_dir, tmp_path / "cora")  # the job partitions beside its raw graph
    state, log = sbatch("train.slurm", tmp_path, METHOD="psgd-pa", RANKS=2, RAW=tmp_path / "cora", OUT=out,
                        EPOCHS=5, EXTRA="--average-every-steps 1")
    assert state == "COMPLETED", log
    result = json.loads((out / "result.json").read_text())
    assert result["method"] == "psgd-pa" and result["partition_method"] == "metis" and result["num_chunks"] == 2
    assert (tmp_path / "cora-metis-k2" / "manifest.json").exists()
    assert set(result["train_bytes_by_category"]) == {"train_param"}


# The requeue round trip: full-graph Grappa, dropout 0, so the resumed run
# must end with the uninterrupted run's parameters.
REQUEUE_EPOCHS = 40
REQUEUE_ENV = dict(EPOCHS=REQUEUE_EPOCHS, REPARTITION_EVERY=5, MODEL="gcn", HIDDEN=16, EXTRA="--dropout 0")


def uninterrupted(data, out):
    from conftest import run_mpi

    r = run_mpi(4, "-m", "grappa.train", "--method", "grappa", "--data", data, "--out", out, "--model", "gcn",
                "--epochs", REQUEUE_EPOCHS, "--hidden", 16, "--repartition-every", 5, "--schedule", "sweep",
                "--weighting", "node", "--halo-hops", -1, "--batch-size", 0, "--backend", "horovod",
                "--no-progress", "--dropout", 0)
    assert r.returncode == 0, r.stderr
    return out


@pytest.mark.mpi
@pytest.mark.parametrize("how,launcher", [("USR1", "srun"), ("preempt", "mpirun")])
def test_requeue_round_trip_resumes_exactly(cora_dir, cora_k16, tmp_path, how, launcher):
    """Stop the running job: USR1 to the batch script (the time limit's
    signal), or `scontrol requeue` (what preemption does: TERM to every
    process, the requeue by Slurm). It checkpoints, requeues, is started at
    once, and must end exactly where an uninterrupted run ends. The USR1 job
    also partitions the graph itself (through srun)."""
    import torch
    from grappa.checkpoint import list_checkpoints, load_checkpoint

    out, data = tmp_path / "run", (tmp_path / "cora-k16" if how == "USR1" else cora_k16)
    if how == "USR1":  # the job partitions its raw graph itself (through srun)
        shutil.copytree(cora_dir, tmp_path / "cora")
    job = submit("train_grappa.slurm", tmp_path, RAW=tmp_path / "cora", DATASET=data, NUM_CHUNKS=16, OUT=out,
                 LAUNCHER=launcher, **REQUEUE_ENV)
    metrics = out / "metrics.jsonl"
    poll(lambda: metrics.exists() and len(metrics.read_text().splitlines()) >= 5, 300, "epoch 5", job)
    if how == "USR1":
        subprocess.run(["scancel", "--batch", "--signal=USR1", job], check=True)
    else:
        subprocess.run(["scontrol", "requeue", job], check=True)
    poll(lambda: job_field(job, "Restarts") not in ("", "0") and job_field(job, "JobState") == "PENDING",
         120, "the requeue", job)
    # The requeue revokes the first run's job credential, with one-second resolution: a start within
    # that second gets "Job credential revoked" and the job ends FAILED (slurmctld.log, "Killing
    # non-startable batch job"). Slurm's own delay after a requeue is 120 s; a test waits just past it.
    time.sleep(2)
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True)
    state = wait_for(job)
    log = (tmp_path / f"job-{job}.out").read_text()
    assert state == "COMPLETED", log
    # One log across both runs, each run marked.
    assert [int(n) for n in re.findall(rf"==== job {job} run (\d+)", log)] == [1, 2], log
    if how == "USR1":
        assert "USR1: checkpoint requested" in log and "requeueing job" in log, log
    epochs = [json.loads(x)["epoch"] for x in metrics.read_text().splitlines()]
    assert epochs == list(range(REQUEUE_EPOCHS))  # none missing, none repeated
    res = json.loads((out / "result.json").read_text())
    assert res["epochs_run"] == REQUEUE_EPOCHS and res["method"] == "grappa" and res["world_size"] == 4
    ref = uninterrupted(data, tmp_path / "reference")
    a = load_checkpoint(list_checkpoints(ref / "checkpoints")[-1])["model"]
    b = load_checkpoint(list_checkpoints(out / "checkpoints")[-1])["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=0)
