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
