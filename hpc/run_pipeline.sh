#!/usr/bin/env bash
# The main job (README command 1): set up the environment if needed, then the
# whole pipeline on the shipped Cora dataset:
#   import -> partition into 16 chunks (mpirun -np 2) -> centralized GCN
#   (the reference) -> Grappa GCN on 4 Horovod ranks -> a summary.
#
#   bash hpc/run_pipeline.sh
#
# WORK (default work_data/) holds datasets; RUNS (default runs/) holds results;
# RANKS (default 4) training ranks; EPOCHS (default 200).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/hpc/setup_env.sh"
# shellcheck disable=SC1091
source "$ROOT/hpc/env.sh"
WORK="${WORK:-$ROOT/work_data}"
RUNS="${RUNS:-$ROOT/runs}"
RANKS="${RANKS:-4}"
EPOCHS="${EPOCHS:-200}"
MODEL_ARGS=(--model gcn --hidden 16 --layers 2 --dropout 0.5 --lr 0.01 --weight-decay 5e-4 --epochs "$EPOCHS")

if [ ! -f "$WORK/cora/graph.json" ]; then
    grappa-import planetoid "$ROOT/datasets/cora" --name cora --out "$WORK/cora"
fi
if [ ! -f "$WORK/cora-k16/manifest.json" ]; then
    mpirun -np 2 python "$ROOT/data_prep/partition.py" --data "$WORK/cora" --out "$WORK/cora-k16" \
        --num-chunks 16 --no-progress --overwrite
fi
grappa-train --data "$WORK/cora" --method centralized "${MODEL_ARGS[@]}" \
    --out "$RUNS/cora-centralized-gcn" --overwrite --no-progress
mpirun -np "$RANKS" grappa-train --method grappa --data "$WORK/cora-k16" "${MODEL_ARGS[@]}" \
    --schedule shuffle --repartition-every 5 \
    --out "$RUNS/cora-grappa-gcn" --overwrite --no-progress
python - "$RUNS/cora-centralized-gcn/result.json" "$RUNS/cora-grappa-gcn/result.json" <<'PY'
import json, sys
c, g = (json.load(open(p)) for p in sys.argv[1:])
print(f"\nCora, {c['model'].upper()}, {c['epochs']} epochs")
print(f"  centralized        test accuracy {100 * c['test_metric']:.1f}%  (published 81.5%)")
print(f"  grappa, {g['world_size']} ranks    test accuracy {100 * g['test_metric']:.1f}%  "
      f"({100 * (g['test_metric'] - c['test_metric']):+.1f} points), "
      f"{g['num_chunks']} chunks, repartition every {g['repartition_every']} epochs")
print(f"  grappa training bytes per rank per epoch: {g['train_bytes_per_rank_per_epoch']:,.0f} "
      f"(gradients only: {sorted(g['train_bytes_by_category'])}), evaluation bytes total {g['eval_bytes_total']:,}")
PY
