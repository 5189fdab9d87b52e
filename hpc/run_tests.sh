#!/usr/bin/env bash
# The test command (README command 2): install what is missing (Debian
# packages, venv, Horovod, Slurm), start the local Slurm, run pytest, stop Slurm.
#
#   bash hpc/run_tests.sh [pytest args]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/hpc/setup_env.sh" --slurm
# shellcheck disable=SC1091
source "$ROOT/hpc/env.sh"
export GRAPPA_SLURM_DIR="${GRAPPA_SLURM_DIR:-/tmp/grappa-slurm-tests}"
export SLURM_CONF="$GRAPPA_SLURM_DIR/slurm.conf"
started_here=0
if bash "$ROOT/hpc/slurm/start.sh"; then started_here=1; else
    echo "run_tests.sh: local Slurm did not start; Slurm tests will fail" >&2; fi
cleanup() { [ "$started_here" = 1 ] && bash "$ROOT/hpc/slurm/stop.sh"; }
trap cleanup EXIT
cd "$ROOT"
python -m pytest "$@"
