"""Every command has --help; environment.yml agrees with setup.cfg."""
from __future__ import annotations

import configparser
import os
import re
import subprocess
import sys

import pytest
from conftest import ROOT, mpi_env, run_cli
from grappa.launch_env import local_mpirun

MODULES = ["grappa.train", "grappa.graph.importers_cli", "grappa.graph.generators_cli"]
SCRIPTS = ["hpc/setup_env.sh"]
PY_SCRIPTS = ["data_prep/import_dataset.py", "data_prep/generate_graph.py", "data_prep/partition.py",
              *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "bench").glob("*.py"))]


@pytest.mark.parametrize("module", MODULES)
def test_help(module):
    r = run_cli(module, "--help")
    assert r.returncode == 0 and "usage:" in r.stdout


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_help(script):
    r = subprocess.run(["bash", str(ROOT / script), "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "Install" in r.stdout


@pytest.mark.parametrize("script", PY_SCRIPTS)
def test_python_script_help(script):
    r = subprocess.run([sys.executable, str(ROOT / script), "--help"], capture_output=True, text=True,
                       env=mpi_env())
    assert r.returncode == 0 and "usage:" in r.stdout, r.stderr


def _norm(req: str) -> tuple[str, str]:
    m = re.match(r"([A-Za-z0-9_.\-]+)\s*(.*)", req.strip())
    return m.group(1).lower().replace("-", "_"), m.group(2).replace(" ", "")


def test_environment_yml_matches_setup_cfg():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    reqs = dict(_norm(r) for r in cfg["options"]["install_requires"].split("\n") if r.strip())
    env = (ROOT / "environment.yml").read_text()
    listed = {}
    for line in env.splitlines():
        m = re.match(r"\s*-\s+([A-Za-z0-9_.\-]+)\s*([=<>!~]=?[^#\s]*)?", line)
        if m and m.group(1) not in ("pip", "conda-forge", "defaults"):
            name, spec = m.group(1).lower().replace("-", "_"), (m.group(2) or "")
            listed[name] = spec.replace(" ", "")
    for name, spec in reqs.items():
        assert name in listed, f"environment.yml lacks {name}"
        if spec:
            want = spec.lstrip("=")
            assert want in listed[name], f"{name}: setup.cfg pins {spec}, environment.yml has {listed[name]!r}"
    assert "horovod" in env and "CMAKE_CXX_STANDARD" in env or "setup_env.sh" in env


def test_ruff_clean():
    import shutil

    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff not installed")
    r = subprocess.run([ruff, "check", "lib", "tests", "bench", "data_prep"], cwd=ROOT, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout


@pytest.mark.parametrize("tasks_over_cores,expect", [(0, ""), (1, "1")])
def test_env_sh_makes_mpi_ranks_yield_only_when_they_outnumber_the_cores(tasks_over_cores, expect):
    """A Slurm allocation with more tasks on the node than cores (the local test
    Slurm advertises 8 CPUs on 2): busy-polling ranks slowed the job's
    distributed evaluation tenfold, so env.sh asks OpenMPI to yield."""
    tasks = len(os.sched_getaffinity(0)) + tasks_over_cores  # what nproc counts
    env = {k: v for k, v in os.environ.items() if k != "OMPI_MCA_mpi_yield_when_idle"}
    env["SLURM_TASKS_PER_NODE"] = f"{tasks}(x2)"
    r = subprocess.run(["bash", "-c", "source hpc/env.sh && printf %s \"${OMPI_MCA_mpi_yield_when_idle:-}\""],
                       cwd=ROOT, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout == expect


def test_local_mpirun_binds_each_rank_to_one_core_only_when_ranks_outnumber_the_cores():
    """OpenMPI binds nothing when oversubscribed; local_mpirun then binds each
    rank to one core, round robin, so that no core is left idle."""
    cores = sorted(os.sched_getaffinity(0))
    assert "--bind-to" not in local_mpirun(len(cores))  # OpenMPI's own binding stands
    show = "import os; print(os.environ['OMPI_COMM_WORLD_RANK'], *sorted(os.sched_getaffinity(0)))"
    r = subprocess.run([*local_mpirun(len(cores) + 1), sys.executable, "-c", show], env=mpi_env(),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    bound = {int(line.split()[0]): [int(c) for c in line.split()[1:]] for line in r.stdout.splitlines()}
    assert sorted(bound) == list(range(len(cores) + 1))
    assert all(len(cpus) == 1 and cpus[0] in cores for cpus in bound.values()), bound
    assert {cpus[0] for cpus in bound.values()} == set(cores), bound  # every core has a rank
