# Source this file to get the grappa environment: the venv and MPI settings.
#   source hpc/env.sh
# Safe to source from job scripts (no `set -e`, no exit).
GRAPPA_ROOT="${GRAPPA_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
GRAPPA_VENV="${GRAPPA_VENV:-$GRAPPA_ROOT/.venv}"
export GRAPPA_ROOT GRAPPA_VENV
if [ -f "$GRAPPA_VENV/bin/activate" ]; then
    # shellcheck disable=SC1091
    . "$GRAPPA_VENV/bin/activate"
fi
# OpenMPI refuses to run as root without these two.
if [ "$(id -u)" = 0 ]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
# Workstations and test nodes often have fewer cores than ranks.
export OMPI_MCA_rmaps_base_oversubscribe="${OMPI_MCA_rmaps_base_oversubscribe:-1}"
# Containers without a high-speed fabric: keep OpenMPI on shared memory + TCP
# and quiet about the missing ones.
export OMPI_MCA_btl="${OMPI_MCA_btl:-self,vader,tcp}"
export OMPI_MCA_btl_vader_single_copy_mechanism="${OMPI_MCA_btl_vader_single_copy_mechanism:-none}"
# More ranks on this node than it has cores (a workstation's allocation, or a
# test Slurm that advertises more CPUs than the machine has): OpenMPI's ranks
# busy-poll unless told so, and a waiting rank then holds the core that the
# rank it waits for needs (a distributed evaluation ran 10x slower).
_tasks="${SLURM_TASKS_PER_NODE:-0}"
_tasks="${_tasks%%[(,]*}"
if [ "${_tasks:-0}" -gt "$(nproc 2>/dev/null || echo 1)" ] 2>/dev/null; then
    export OMPI_MCA_mpi_yield_when_idle="${OMPI_MCA_mpi_yield_when_idle:-1}"
fi
unset _tasks
# Threads per rank: grappa-train divides the node's cores among its local
# ranks unless OMP_NUM_THREADS is set (see grappa.comm.base.threads_per_rank).
