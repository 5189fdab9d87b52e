#!/usr/bin/env bash
# A billion edges on one machine: RMAT scale 26 (67M nodes, 1.07B edges, no
# node features) generated and partitioned into 64 chunks with 2 ranks.
# Needs ~55 GB free disk under WORK; falls back to scale 25 when short.
#   bash bench/billion_edges.sh [WORK] [MEMORY_BUDGET_MB]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
source "$ROOT/hpc/env.sh"
WORK="${1:-/tmp/billion}"
BUDGET="${2:-1024}"
mkdir -p "$WORK"
free_gb=$(df -BG --output=avail "$WORK" | tail -1 | tr -dc 0-9)
SCALE=26
if [ "$free_gb" -lt 58 ]; then
    echo "only ${free_gb} GB free under $WORK: falling back to scale 25" >&2
    SCALE=25
fi
t0=$(date +%s)
/usr/bin/time -f "generate: %e s wall, %M KB peak RSS" \
    python -m grappa.graph.generators_cli rmat --scale $SCALE --num-features 0 --quiet --overwrite --out "$WORK/rmat$SCALE"
t1=$(date +%s)
mpirun -np 2 --oversubscribe python "$ROOT/data_prep/partition.py" --data "$WORK/rmat$SCALE" \
    --out "$WORK/rmat$SCALE-k64" --num-chunks 64 --memory-budget "$BUDGET" --overwrite --no-progress
t2=$(date +%s)
python - "$WORK/rmat$SCALE-k64/manifest.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1])); cb = m["created_by"]
print(f"partition: {m['num_edges']} edges, {m['num_chunks']} chunks, {cb['wall_s']:.1f} s on {cb['ranks']} ranks, "
      f"{m['num_edges'] / cb['wall_s'] / cb['ranks'] / 1e6:.2f} M edges/s/rank, "
      f"peak RSS per rank {cb['peak_rss_mb_per_rank']} MB (budget {cb['memory_budget_mb']} MB)")
PY
echo "disk: raw $(du -sh "$WORK/rmat$SCALE" | cut -f1), shards $(du -sh "$WORK/rmat$SCALE-k64" | cut -f1)"
echo "wall: generate $((t1 - t0)) s, partition $((t2 - t1)) s"
grappa-validate --no-checksums "$WORK/rmat$SCALE-k64"
