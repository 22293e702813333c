#!/usr/bin/env bash
# LSNet vs RetinaNet vs GFL on `shapes` (boxes), same schedule and seed. The RetinaNet and GFL runs
# of iou_aware_vs_retinanet_shapes.sh / gfl_shapes.sh are reused when present.
# Writes output/experiments/lsnet/.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
OUT=output/experiments/lsnet
RETINANET=output/experiments/iou_aware/retinanet_slim_R_FPN
GFL=output/experiments/gfl/gfl_slim_R_FPN
if [ ! -f $RETINANET/model_final.pth ]; then
    $PY train_net.py --config-file configs/Shapes/retinanet_slim_R_FPN.yaml SEED 42 OUTPUT_DIR $RETINANET
fi
if [ ! -f $GFL/model_final.pth ]; then
    $PY train_net.py --config-file configs/Shapes/gfl_slim_R_FPN.yaml SEED 42 OUTPUT_DIR $GFL
fi
$PY train_net.py --config-file configs/Shapes/lsnet_slim_R_FPN.yaml SEED 42 OUTPUT_DIR $OUT/lsnet_slim_R_FPN
$PY tools/summarize_runs.py $RETINANET $GFL $OUT/lsnet_slim_R_FPN
