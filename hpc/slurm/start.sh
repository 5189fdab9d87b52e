#!/usr/bin/env bash
# Start a single-node Slurm (munge + slurmctld + slurmd) for a workstation or
# the test suite. Idempotent: a second call returns at once if it is running.
#
#   bash hpc/slurm/start.sh            # then: export SLURM_CONF=$GRAPPA_SLURM_DIR/slurm.conf
#
# GRAPPA_SLURM_DIR  state, config, logs, PID files (default /tmp/grappa-slurm)
# GRAPPA_SLURM_CPUS CPUs the node declares (default: max(nproc, 8), so tests
#                   can run 4 ranks on a 2-core machine; slurmd trusts the config)
# Needs root and the Debian packages slurmctld slurmd slurm-client munge
# (bash hpc/setup_env.sh --slurm installs them).
set -euo pipefail
DIR="${GRAPPA_SLURM_DIR:-/tmp/grappa-slurm}"
mkdir -p "$DIR"/{state,spool}
export SLURM_CONF="$DIR/slurm.conf"
exec 9>"$DIR/lock"
flock 9  # one start/stop at a time; fd 9 is closed for the daemons below

log() { echo "[slurm] $*" >&2; }
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null && grep -q "$2" "/proc/$(cat "$1")/comm" 2>/dev/null; }

node_idle() { sinfo -h -o %T 2>/dev/null | grep -Eq '^(idle|mixed|allocated)'; }
if alive "$DIR/slurmctld.pid" slurmctld && alive "$DIR/slurmd.pid" slurmd && node_idle; then
    log "already running (SLURM_CONF=$SLURM_CONF)"
    exit 0
fi

for bin in munged slurmctld slurmd sinfo; do
    command -v "$bin" >/dev/null || { echo "start.sh: $bin not found; run: bash hpc/setup_env.sh --slurm" >&2; exit 1; }
done

HOST="$(hostname -s)"
CPUS="${GRAPPA_SLURM_CPUS:-$(( $(nproc) > 8 ? $(nproc) : 8 ))}"
MEM="$(( $(free -m | awk '/^Mem:/{print $2}') * 9 / 10 ))"
cat > "$SLURM_CONF" <<CONF
ClusterName=grappa
SlurmctldHost=$HOST(127.0.0.1)
Include $(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.conf
JobCompLoc=$DIR/jobcomp.log
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF

# munge: reuse a running one, else start ours and remember its PID.
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    install -d -o munge -g munge -m 0755 /run/munge
    [ -f /etc/munge/munge.key ] || { echo "start.sh: /etc/munge/munge.key missing (reinstall munge)" >&2; exit 1; }
    runuser -u munge -- munged 9>&-
    for _ in $(seq 50); do [ -f /run/munge/munged.pid ] && break; sleep 0.1; done
    cp /run/munge/munged.pid "$DIR/munged.pid"
    log "started munged"
fi
alive "$DIR/slurmctld.pid" slurmctld || { slurmctld -i 9>&-; log "started slurmctld"; }
alive "$DIR/slurmd.pid" slurmd || { slurmd 9>&-; log "started slurmd"; }
for _ in $(seq 300); do
    node_idle && { log "ready: node $HOST with $CPUS CPUs (export SLURM_CONF=$SLURM_CONF)"; exit 0; }
    sleep 0.1
done
echo "start.sh: node did not become idle in 30 s; see $DIR/slurmctld.log and $DIR/slurmd.log" >&2
sinfo -N -l >&2 || true
exit 1
