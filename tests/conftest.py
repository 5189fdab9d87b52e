"""Shared fixtures: repository paths, the shipped Cora, and real mpirun/CLI runners."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from grappa.launch_env import local_mpirun

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GRAPPA_SHARED", ROOT.parent / "shared"))


def mpi_env() -> dict:
    env = dict(os.environ)
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1",
               PYTHONPATH=str(ROOT / "lib") + os.pathsep + env.get("PYTHONPATH", ""))
    env.setdefault("OMPI_MCA_btl", "self,vader,tcp")
    env.setdefault("OMPI_MCA_btl_vader_single_copy_mechanism", "none")
    return env


def run_mpi(np_: int, *args, timeout: int = 300) -> subprocess.CompletedProcess:
    """Real mpirun with ``np_`` ranks of this interpreter."""
    cmd = [*local_mpirun(np_), sys.executable, *map(str, args)]
    return subprocess.run(cmd, env=mpi_env(), capture_output=True, text=True, timeout=timeout)


def descendants(pid: int) -> list[int]:
    """PIDs of every process below ``pid`` (Linux /proc), so a test signals
    only what it started, never another run on the machine."""
    parent = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue  # exited meanwhile
            parent[int(d.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        kids = [c for c, p in parent.items() if p in frontier]
        found += kids
        frontier = kids
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


class MakesAFile:
    """Unpickling this creates a file: what a hostile pickle or checkpoint could do."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def run_cli(module: str, *args, timeout: int = 600) -> subprocess.CompletedProcess:
    """A grappa command as users run it (a fresh process, real exit status)."""
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], env=mpi_env(),
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def cora_dir(tmp_path_factory) -> Path:
    from grappa.graph.importers import import_planetoid

    out = tmp_path_factory.mktemp("cora")
    import_planetoid(ROOT / "datasets" / "cora", out, name="cora")
    return out


@pytest.fixture(scope="session")
def cora(cora_dir):
    from grappa.train.data import load_graph

    return load_graph(cora_dir)


def _partitioned_cora(cora_dir, tmp_path_factory, k: int) -> Path:
    out = tmp_path_factory.mktemp(f"k{k}") / f"cora-k{k}"
    r = run_mpi(2, ROOT / "data_prep/partition.py", "--data", cora_dir, "--out", out, "--num-chunks", k,
                "--no-progress")
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(scope="session")
def cora_k8(cora_dir, tmp_path_factory) -> Path:
    """Cora partitioned into 8 random chunks by 2 real MPI ranks."""
    return _partitioned_cora(cora_dir, tmp_path_factory, 8)


@pytest.fixture(scope="session")
def cora_k16(cora_dir, tmp_path_factory) -> Path:
    return _partitioned_cora(cora_dir, tmp_path_factory, 16)
