#!/usr/bin/env bash
# Every dense box detector of the package on `shapes`, seeds 42 43 44 (SEEDS="..." to change):
# RetinaNet, IoU-aware RetinaNet, GFL, GFL V2 and LSNet (boxes), 1000 iterations x 8 images, same
# slim backbone, data and schedule; then the IoU-aware model's alpha sweep and correlations on every
# seed's weights. Resumable (finished runs are skipped). Writes output/experiments/shapes_detectors/
# (results.md, ap_per_seed_bbox.png, iou_aware_analysis_seedK/).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
SEEDS=${SEEDS:-42 43 44}
OUT=${OUT:-output/experiments/shapes_detectors}
$PY tools/experiments/seeds.py --output $OUT --seeds $SEEDS --tasks bbox \
    --run retinanet configs/Shapes/retinanet_slim_R_FPN.yaml \
    --run iou_aware_retinanet configs/Shapes/iou_aware_retinanet_slim_R_FPN.yaml \
    --run gfl configs/Shapes/gfl_slim_R_FPN.yaml \
    --run gflv2 configs/Shapes/gflv2_slim_R_FPN.yaml \
    --run lsnet configs/Shapes/lsnet_slim_R_FPN.yaml
for seed in $SEEDS; do
    analysis=$OUT/iou_aware_analysis_seed$seed
    [ -f $analysis/results.json ] && continue
    $PY tools/analyze.py --config-file configs/Shapes/iou_aware_retinanet_slim_R_FPN.yaml --output $analysis \
        --alpha-sweep 0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0 --upper-bound \
        MODEL.WEIGHTS $OUT/iou_aware_retinanet/seed$seed/model_final.pth
done
