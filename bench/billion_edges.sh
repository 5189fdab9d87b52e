#!/usr/bin/env bash
# A billion edges on one machine: an SBM with 8,388,608 nodes, 128 in-edges
# per node (1.07B edges), 16 features and 8 classes is generated, partitioned
# into 16 chunks by 2 ranks, validated, then trained by Grappa on 4 ranks in
# mini-batch mode for one epoch and one full-neighbour evaluation
# (bench/scaling.py; the table goes to WORK/results/scaling.md).
# Needs about 60 GB free disk under WORK and 4 x 4 GB of memory.
#   bash bench/billion_edges.sh [WORK] [MEMORY_BUDGET_MB]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
source "$ROOT/hpc/env.sh"
WORK="${1:-/tmp/billion}"
BUDGET="${2:-1024}"
NODES=8388608
mkdir -p "$WORK"
free_gb=$(df -BG --output=avail "$WORK" | tail -1 | tr -dc 0-9)
if [ ! -d "$WORK/sbm$NODES-d128-k16" ] && [ "$free_gb" -lt 60 ]; then
    echo "only ${free_gb} GB free under $WORK: the run needs about 60 GB (raw edges, spill files, shards)" >&2
    exit 2
fi
python "$ROOT/bench/scaling.py" --work "$WORK" --nodes "$NODES" --avg-degree 128 --memory-budget "$BUDGET" \
    --out "$WORK/results"
grappa-validate --no-checksums "$WORK/sbm$NODES-d128-k16"
