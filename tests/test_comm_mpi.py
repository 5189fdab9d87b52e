"""The comm layer under real `mpirun -np 4`: right results, exact byte counts."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import ROOT, run_mpi
from grappa.comm import SingleComm, make_comm


def expected(r: int, p: int) -> dict:
    base = np.arange(10, dtype=np.float32)
    return {
        "allreduce_sum": (p * base + sum(range(p))).tolist(),
        "allreduce_avg": (base + sum(range(p)) / p).tolist(),
        "allreduce_max": [float(p - 1)],
        "allgather": [[float(q)] * 3 for q in range(p) for _ in range(q + 1)],
        "broadcast": [7.0, 8.0],
        "alltoallv": [[q, r] for q in range(p) for _ in range(r + 1)],
        "alltoallv_splits": [r + 1] * p,
        "ialltoallv": [[q, r] for q in range(p) for _ in range(r + 1)],
        "carrying": (p * base + sum(range(p))).tolist(),
        "carrying_scalars": [float(sum(range(p))), float(p)],
        # cost model of grappa.comm.base, computed by hand:
        "bytes": {
            "a": 2 * round(2 * (p - 1) / p * 40),   # two allreduces of 10 float32
            "b": round(2 * (p - 1) / p * 4),        # one allreduce of 1 float32
            "c": (p - 1) * (r + 1) * 24,            # own (r+1) x 3 float64 rows to every other rank
            "d": (p - 1) * 8 if r == 0 else 0,      # broadcast from root 0
            "e": 16 * sum(j + 1 for j in range(p) if j != r),  # j+1 int64 pairs to each other rank j
            "f": 16 * sum(j + 1 for j in range(p) if j != r),  # the same, non-blocking
            "g": round(2 * (p - 1) / p * 40),       # allreduce_carrying: the tensor under its category,
            "control": round(2 * (p - 1) / p * 8),  # the two scalars in the same allreduce under control
        },
        # latency rounds (the time model's messages in sequence): 2 (P-1) per ring allreduce,
        # P-1 per allgather, ceil(log2 P) per broadcast, 1 per alltoallv
        "rounds": {"a": 2 * 2 * (p - 1), "b": 2 * (p - 1), "c": p - 1, "d": 2, "e": 1, "f": 1,
                   "g": 2 * (p - 1), "control": 0},  # the scalars add no round of their own
    }


@pytest.mark.mpi
@pytest.mark.parametrize("backend", ["horovod", "gloo"])
def test_collectives_and_byte_counters_np4(tmp_path, backend):
    res = run_mpi(4, ROOT / "tests/mpi/comm_check.py", backend, tmp_path, timeout=180)
    assert res.returncode == 0, res.stdout + res.stderr
    for r in range(4):
        got = json.loads((tmp_path / f"rank{r}.json").read_text())
        assert got["backend"] == backend and got["size"] == 4
        want = expected(r, 4)
        for key, value in want.items():
            if key == "bytes":
                assert {k: v for k, v in got["bytes"].items() if v} == {k: v for k, v in value.items() if v}, r
            else:
                assert got[key] == value, (key, r)
        # measured seconds inside each category's calls (the non-blocking one's wait included)
        assert set(got["seconds"]) == {"a", "b", "c", "d", "e", "f", "g", "barrier"}, got["seconds"]
        assert all(0 < s < 60 for s in got["seconds"].values()), got["seconds"]


def test_single_process_counts_nothing():
    import torch

    comm = make_comm("auto")
    assert isinstance(comm, SingleComm)
    out = comm.allreduce(torch.ones(5), category="train_grad")
    assert out.tolist() == [1.0] * 5 and comm.counter.bytes["train_grad"] == 0
    recv, splits = comm.alltoallv(torch.ones(3, 2), [3], category="eval")
    assert splits == [3] and comm.counter.total() == 0


@pytest.mark.parametrize("var,value,ranks", [("OMPI_COMM_WORLD_LOCAL_SIZE", "4", 4),
                                             ("SLURM_STEP_TASKS_PER_NODE", "4", 4),
                                             ("SLURM_STEP_TASKS_PER_NODE", "2(x3)", 2),
                                             ("SLURM_STEP_TASKS_PER_NODE", "3,1", 3)])
def test_threads_per_rank_shares_the_cores_among_local_ranks(monkeypatch, var, value, ranks):
    import os

    from grappa.comm.base import threads_per_rank

    for v in ("OMP_NUM_THREADS", "OMPI_COMM_WORLD_LOCAL_SIZE", "SLURM_STEP_TASKS_PER_NODE", "SLURM_NTASKS_PER_NODE",
              "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    monkeypatch.setenv(var, value)
    assert threads_per_rank() == 8 // ranks  # srun ranks no longer each take every core
