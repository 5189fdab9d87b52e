"""An emulated cluster (grappa.emulated_cluster): real network namespaces, a
shaped bridge, mpirun starting ranks in two namespaces over TCP. Training
across the two nodes equals the same run on one node, and the bytes the
link carried match the bytes grappa.comm counted. Everything made is
removed again."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, mpi_env, run_cli, run_mpi

NAME = f"gt{os.getpid()}"


def _can_make_namespaces() -> str:
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"{NAME}-probe"
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if r.returncode:
        return f"cannot make a network namespace here: {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return ""


REASON = _can_make_namespaces()
pytestmark = pytest.mark.skipif(bool(REASON), reason=REASON or "-")


def ours() -> list[str]:
    """Namespaces and hosts directories of this test process's clusters still present."""
    found = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    hosts = [p.name for p in Path("/etc/netns").glob(f"{NAME}*")]
    return [n for n in found if n.startswith(NAME)] + hosts


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    hostfile = tmp_path_factory.mktemp("cluster") / "hosts"
    r = run_cli("grappa.emulated_cluster", "up", "--name", NAME, "--nodes", 2, "--profile", "1gbit",
                "--hostfile", hostfile, timeout=180)
    try:
        assert r.returncode == 0, r.stderr
        yield r.stdout, hostfile
    finally:
        down = run_cli("grappa.emulated_cluster", "down", "--name", NAME)
        assert down.returncode == 0, down.stderr
        assert ours() == []


def tx_bytes(node: int) -> int:
    out = subprocess.run(["ip", "-n", f"{NAME}-node{node}", "-s", "-j", "link", "show", "eth0"],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)[0]["stats64"]["tx"]["bytes"]


def train_across(data: Path, out: Path, method: str, backend: str) -> subprocess.CompletedProcess:
    """Two ranks, rank r on node r, started by mpirun in node 0."""
    cmd = [sys.executable, "-m", "grappa.emulated_cluster", "run", "--name", NAME, "--node", "0", "--",
           "mpirun", "--host", "10.77.0.1,10.77.0.2", "-np", "2", "--bind-to", "none",
           sys.executable, "-m", "grappa.train", *train_args(data, out, method, backend)]
    return subprocess.run(cmd, env=mpi_env(), capture_output=True, text=True, timeout=300)


def train_args(data, out, method, backend) -> list[str]:
    return ["--method", method, "--data", str(data), "--out", str(out), "--epochs", "4", "--eval-every", "2",
            "--dropout", "0", "--backend", backend, "--no-progress"]


def final_model(out: Path) -> dict:
    from grappa.checkpoint import list_checkpoints, load_checkpoint

    return load_checkpoint(list_checkpoints(out / "checkpoints")[-1])["model"]


@pytest.fixture(scope="module")
def metis2(cora_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("m2") / "cora-metis2"
    r = run_mpi(2, ROOT / "data_prep/partition.py", "--data", cora_dir, "--out", out, "--num-chunks", 2,
                "--method", "metis", "--no-progress")
    assert r.returncode == 0, r.stderr
    return out


def test_a_shaped_link_gives_its_rate_and_a_hostfile(cluster):
    stdout, hostfile = cluster
    gbit = float(stdout.split("measured ")[1].split(" Gbit/s")[0])
    assert 0.5 <= gbit <= 1.1, stdout  # tbf at 1 Gbit/s: CLUSTER_NOTES measured 0.95
    assert hostfile.read_text().split() == ["10.77.0.1", "slots=1", "10.77.0.2", "slots=1"]


@pytest.mark.parametrize("method", ["halo", "grappa"])
@pytest.mark.parametrize("backend", ["gloo", "horovod"])
def test_training_across_two_nodes_equals_one_node_and_the_wire_carries_the_counted_bytes(
        cluster, metis2, cora_k8, tmp_path, method, backend):
    data = metis2 if method == "halo" else cora_k8
    before = tx_bytes(0)
    r = train_across(data, tmp_path / "across", method, backend)
    assert r.returncode == 0, r.stderr[-3000:]
    wire = tx_bytes(0) - before
    local = run_mpi(2, "-m", "grappa.train", *train_args(data, tmp_path / "local", method, backend))
    assert local.returncode == 0, local.stderr[-3000:]
    a, b = final_model(tmp_path / "across"), final_model(tmp_path / "local")
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-5
    # Rank 0 ran on node 0: what it counted (every category) against what node 0's link sent.
    counted = sum(json.loads((tmp_path / "across" / "result.json").read_text())["bytes_total_by_category"].values())
    print(f"{method}/{backend}: wire {wire} B, counted {counted} B, ratio {wire / counted:.3f}")
    # The wire adds TCP/IP headers and the launch's own traffic (1-5% here); Horovod also sends
    # its negotiation (which tensors are ready) every cycle, uncounted: up to 18% on these small runs.
    assert 0.95 <= wire / counted <= (1.10 if backend == "gloo" else 1.25), (wire, counted)


def test_a_delay_the_kernel_cannot_give_is_refused_in_one_line():
    r = run_cli("grappa.emulated_cluster", "up", "--name", f"{NAME}x", "--profile", "wan")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "netem" in r.stderr, r.stderr
    assert not [n for n in ours() if n.startswith(f"{NAME}x")]


def test_an_interrupted_exec_removes_everything_it_made():
    name = f"{NAME}i"
    p = subprocess.Popen([sys.executable, "-m", "grappa.emulated_cluster", "exec", "--name", name, "--nodes", "3",
                          "--profile", "1gbit", "--", "sleep", "60"], env=mpi_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not Path(f"/run/netns/{name}-node2").exists():
        time.sleep(0.2)
    assert Path(f"/run/netns/{name}-node2").exists(), "the cluster never came up"
    p.send_signal(signal.SIGTERM)  # the exec process this test started, by its PID
    _, err = p.communicate(timeout=120)
    assert p.returncode != 0
    assert not [n for n in ours() if n.startswith(name)], err
