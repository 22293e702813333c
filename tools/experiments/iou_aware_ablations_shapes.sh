#!/usr/bin/env bash
# IoU-aware RetinaNet with the IoU target detached (MODEL.IOU_AWARE.DETACH_TARGET True): loss_iou
# then trains the IoU branch only, not the box regression, which separates the ranking effect of
# the IoU prediction from its regression effect. Seeds 42 43 44 (SEEDS="..." to change); the
# not-detached runs are the campaign's (campaign.sh, group shapes_boxes). Then the alpha sweep and
# the correlations of each seed's final weights (tools/experiments/checkpoint_analysis.py).
# Resumable. Writes output/experiments/iou_aware_ablations/, the run records to $RECORDS (default
# docs/results/iou_aware_ablations/) and the analysis records to $RECORDS_analysis.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
SEEDS=${SEEDS:-42 43 44}
OUT=output/experiments/iou_aware_ablations
RECORDS=${RECORDS:-docs/results/iou_aware_ablations}
CONFIG=configs/Shapes/iou_aware_retinanet_slim_R_FPN.yaml
$PY tools/experiments/seeds.py --output $OUT --records "$RECORDS" --seeds $SEEDS --tasks bbox \
    --run iou_aware_detached $CONFIG MODEL.IOU_AWARE.DETACH_TARGET True
$PY tools/experiments/checkpoint_analysis.py --run-dir $OUT/iou_aware_detached \
    --records "${RECORDS}_analysis/iou_aware_detached" --checkpoints model_final.pth \
    --alpha-sweep 0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0
