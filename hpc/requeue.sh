# shellcheck shell=bash
# Sourced by the training job scripts: run_requeueable CMD ARGS...
#
# Runs the training command in the background, forwards USR1 (what
# `#SBATCH --signal=B:USR1@120` sends before the time limit) to it, waits for
# it, and when it exits with 99 (every rank checkpointed on request) requeues
# this job, whose next run resumes from the checkpoint. Returns the command's
# status otherwise.
run_requeueable() {
    "$@" &
    local pid=$! status
    # shellcheck disable=SC2064
    trap "echo '[grappa] USR1: checkpoint requested'; kill -USR1 $pid 2>/dev/null || true" USR1
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
        [ -n "${SLURM_JOB_ID:-}" ] && scontrol requeue "$SLURM_JOB_ID"
        return 0
    fi
    return "$status"
}
