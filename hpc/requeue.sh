# shellcheck shell=bash
# Sourced by the training job scripts.
#
#   job_banner                 one line marking this run of the job (logs append
#                              across requeues: #SBATCH --open-mode=append)
#   mapfile -t launch < <(launcher N)
#                              the command prefix that starts N ranks: srun --mpi=pmix
#                              inside an allocation; mpirun outside one or with
#                              LAUNCHER=mpirun
#   run_requeueable CMD ARGS...
#
# run_requeueable runs the training command in the background and forwards
# the stop signals (GRAPPA_STOP_SIGNALS, default "USR1 TERM": what
# `#SBATCH --signal=B:USR1@120` sends before the time limit, and what Slurm
# sends on preemption or scancel) to it as USR1; every rank then checkpoints
# after its current step and exits with 99, and this job requeues itself, so
# that the next run resumes from the checkpoint. Returns the command's status
# otherwise.

job_banner() {
    echo "[grappa] ==== job ${SLURM_JOB_ID:-local} run $(( ${SLURM_RESTART_COUNT:-0} + 1 ))" \
         "(restart ${SLURM_RESTART_COUNT:-0}) on $(hostname -s) at $(date -Is) ===="
}

launcher() {
    local how="${LAUNCHER:-}"
    if [ -z "$how" ]; then
        if [ -n "${SLURM_JOB_ID:-}" ]; then how=srun; else how=mpirun; fi
    fi
    case "$how" in
        # --wait: once one rank has ended, the others get 30 s, then the step ends (no rank
        # left waiting in a collective). Not --kill-on-bad-exit: a stop's exit status 99 is
        # "bad" to srun, which would kill ranks still closing after their checkpoint.
        srun) printf '%s\n' srun --mpi=pmix --ntasks="$1" --overcommit --wait=30 ;;
        mpirun) printf '%s\n' mpirun -np "$1" --oversubscribe ;;
        *) echo "[grappa] LAUNCHER=$how: use srun or mpirun" >&2; return 2 ;;
    esac
}

run_requeueable() {
    "$@" &
    local pid=$! status sig
    for sig in ${GRAPPA_STOP_SIGNALS:-USR1 TERM}; do
        # shellcheck disable=SC2064
        trap "echo '[grappa] $sig: checkpoint requested'; kill -USR1 $pid 2>/dev/null || true" "$sig"
    done
    set +e
    while true; do
        wait "$pid"; status=$?
        # wait returns >128 when a trapped signal interrupted it: keep waiting for the ranks.
        if [ "$status" -gt 128 ] && kill -0 "$pid" 2>/dev/null; then continue; fi
        break
    done
    set -e
    if [ "$status" -eq 99 ]; then
        echo "[grappa] checkpointed; requeueing job ${SLURM_JOB_ID:-}"
        if [ -n "${SLURM_JOB_ID:-}" ]; then
            # On preemption (or `scontrol requeue`) Slurm has requeued the job itself.
            scontrol requeue "$SLURM_JOB_ID" || echo "[grappa] job ${SLURM_JOB_ID} is already being requeued"
        fi
        return 0
    fi
    return "$status"
}
