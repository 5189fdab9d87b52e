"""Which rank this process is, read from its launcher's environment (no
torch, no MPI), so that every command, the light ones included, can tell."""
from __future__ import annotations

import os


def env_rank_size() -> tuple[int, int, int]:
    """(rank, size, local_rank) from OpenMPI, Slurm or PMI variables; (0, 1, 0) if none."""
    for r, s, lr in (("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"),
                     ("PMIX_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"),
                     ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"),
                     ("PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID"),
                     ("RANK", "WORLD_SIZE", "LOCAL_RANK")):
        if r in os.environ and s in os.environ:
            return int(os.environ[r]), int(os.environ[s]), int(os.environ.get(lr, 0))
    return 0, 1, 0


def local_mpirun(ranks: int) -> list[str]:
    """``mpirun`` for ``ranks`` ranks on this node. With more ranks than cores (a workstation,
    a test machine) each rank is bound to one core, round robin: OpenMPI binds nothing when
    oversubscribed, and ranks left to migrate lost 15 to 30% of a small graph's epoch
    (docs/BENCHMARKS.md, "Ranks bound to cores"). Each such rank uses one thread
    (``grappa.comm.base.threads_per_rank``), so one core is all it needs."""
    cmd = ["mpirun", "-np", str(ranks), "--oversubscribe"]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1  # as nproc
    if ranks > cores:
        cmd += ["--bind-to", "core:overload-allowed"]
    return cmd
