#!/usr/bin/env bash
# IoU-aware RetinaNet with the IoU target detached (MODEL.IOU_AWARE.DETACH_TARGET True): loss_iou
# then trains the IoU branch only, not the box regression, which separates the ranking effect of
# the IoU prediction from its regression effect. Seeds 42 43 44 (SEEDS="..." to change); the
# not-detached runs are the campaign's (campaign.sh, group shapes_boxes). Then the alpha sweep per
# seed. Resumable. Writes output/experiments/iou_aware_ablations/ and the run records to $RECORDS
# (default docs/results/iou_aware_ablations/).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
SEEDS=${SEEDS:-42 43 44}
OUT=output/experiments/iou_aware_ablations
CONFIG=configs/Shapes/iou_aware_retinanet_slim_R_FPN.yaml
$PY tools/experiments/seeds.py --output $OUT --records "${RECORDS:-docs/results/iou_aware_ablations}" --seeds $SEEDS --tasks bbox \
    --run iou_aware_detached $CONFIG MODEL.IOU_AWARE.DETACH_TARGET True
for seed in $SEEDS; do
    analysis=$OUT/analysis_seed$seed
    [ -f $analysis/results.json ] && continue
    $PY tools/analyze.py --config-file $CONFIG --output $analysis --alpha-sweep 0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0 \
        MODEL.WEIGHTS $OUT/iou_aware_detached/seed$seed/model_final.pth MODEL.IOU_AWARE.DETACH_TARGET True
done
