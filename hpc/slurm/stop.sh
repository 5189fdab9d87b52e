#!/usr/bin/env bash
# Stop the daemons that hpc/slurm/start.sh started (and only those), via the
# PID files it wrote, checking each process name first (PIDs are reused).
set -uo pipefail
DIR="${GRAPPA_SLURM_DIR:-/tmp/grappa-slurm}"
[ -d "$DIR" ] || exit 0
exec 9>"$DIR/lock"
flock 9
stop_one() {  # pidfile name
    local f="$DIR/$1.pid" pid
    [ -f "$f" ] || return 0
    pid="$(cat "$f")"
    if kill -0 "$pid" 2>/dev/null && grep -q "$2" "/proc/$pid/comm" 2>/dev/null; then
        kill "$pid"
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
        echo "[slurm] stopped $2 ($pid)" >&2
    fi
    rm -f "$f"
}
stop_one slurmd slurmd
stop_one slurmctld slurmctld
stop_one munged munged
exit 0
