"""No hangs and exact recovery: a 5-kill fault campaign (a rank SIGKILLed in
each phase, the job ends within 60 s, the resumed run equals an
uninterrupted one), a stopped (hung, not dead) rank ending the job through
the communication timeout on both backends, and the fault spec's checks."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT, cmdline, descendants, mpi_env
from grappa.faults import PHASES, FaultPoints
from grappa.launch_env import local_mpirun

pytestmark = pytest.mark.mpi


@pytest.mark.slow
def test_five_kill_campaign_resumes_exactly(cora_dir, tmp_path):
    out = tmp_path / "campaign"
    r = subprocess.run([sys.executable, ROOT / "bench/fault_campaign.py", "--kills", "5", "--ranks", "2",
                        "--data", cora_dir, "--out", out],
                       env=mpi_env(), capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (res,) = json.loads((out / "campaign.json").read_text())
    kills = res["kills"]
    assert [k["phase"] for k in kills] == list(PHASES)  # one kill in every phase
    for k in kills:
        assert k["reached"] and k["rc"] != 0 and k["detect_s"] < 60, k
    assert all(k["resume_s"] is not None for k in kills[1:]), kills  # each relaunch trained again
    assert res["equal"] and res["max_abs_diff"] <= 1e-5 and res["metrics_continuous"]
    assert "final parameters equal: True" in r.stdout  # the printed table


@pytest.mark.parametrize("backend", ["gloo", "horovod"])
def test_a_hung_rank_ends_the_job_through_the_timeout(cora_k16, tmp_path, backend):
    """A rank that is alive but silent (SIGSTOP) is not the launcher's to catch:
    the others' collectives time out and the job ends (here --comm-timeout 5)."""
    out = tmp_path / "run"
    cmd = [*local_mpirun(2), sys.executable, "-m", "grappa.train", "--method", "grappa",
           "--data", str(cora_k16), "--out", str(out), "--no-progress", "--epochs", "100000",
           "--backend", backend, "--comm-timeout", "5", "--eval-every", "1000"]
    proc = subprocess.Popen(cmd, env=mpi_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ranks: list[int] = []
    try:
        end = time.time() + 120
        while not (out / "metrics.jsonl").exists() or len((out / "metrics.jsonl").read_text().splitlines()) < 3:
            assert proc.poll() is None and time.time() < end, proc.communicate()[0][-3000:]
            time.sleep(0.1)
        ranks = [p for p in descendants(proc.pid) if "grappa.train" in cmdline(p)]  # this mpirun's only
        assert len(ranks) == 2
        os.kill(max(ranks), signal.SIGSTOP)
        t0 = time.time()
        log = proc.communicate(timeout=90)[0]
        assert proc.returncode != 0 and time.time() - t0 < 60, log[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
        for p in ranks:  # never leave a stopped rank of ours behind
            if "grappa.train" in cmdline(p):
                os.kill(p, signal.SIGKILL)


def test_fault_spec_is_checked_and_only_the_named_rank_is_armed():
    with pytest.raises(ValueError, match="RANK:PHASE:COUNT"):
        FaultPoints(0, "0:nowhere:1")
    with pytest.raises(ValueError, match="RANK:PHASE:COUNT"):
        FaultPoints(0, "zero:step:1")
    other = FaultPoints(1, "0:step:1")
    for _ in range(5):
        other.hit("step")  # rank 1 is not the target: it lives
    assert other.target is None and FaultPoints(0, "").target is None
    assert FaultPoints(0, "0:eval:3:/tmp/x").target == ("eval", 3, "/tmp/x", "kill")
    assert FaultPoints(2, "2:shard:1::enospc").target == ("shard", 1, None, "enospc")
    with pytest.raises(OSError, match="No space left") as e:
        FaultPoints(2, "2:shard:1::enospc").hit("shard", "/data/chunk-00001.h5")
    assert e.value.filename == "/data/chunk-00001.h5"
    with pytest.raises(ValueError, match="ACTION"):
        FaultPoints(0, "0:step:1::explode")
