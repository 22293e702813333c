#!/usr/bin/env bash
# LSNet instance masks (contours) vs Detectron2's Mask R-CNN on `shapes`, and LSNet pose vs
# Detectron2's Keypoint R-CNN on `stickmen`: same slim backbone, schedule (1000 iterations x 8
# images) and seed. Writes output/experiments/lsnet_tasks/; prints the segm / keypoints tables.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
OUT=output/experiments/lsnet_tasks
for config in Shapes/lsnet_contour_slim_R_FPN Shapes/mask_rcnn_slim_R_FPN \
              Stickmen/lsnet_keypoint_slim_R_FPN Stickmen/keypoint_rcnn_slim_R_FPN; do
    name=$(basename $config)
    if [ ! -f $OUT/$name/model_final.pth ]; then
        $PY train_net.py --config-file configs/$config.yaml SEED 42 OUTPUT_DIR $OUT/$name
    fi
done
$PY tools/summarize_runs.py --task segm $OUT/lsnet_contour_slim_R_FPN $OUT/mask_rcnn_slim_R_FPN
$PY tools/summarize_runs.py --task bbox $OUT/lsnet_contour_slim_R_FPN $OUT/mask_rcnn_slim_R_FPN
$PY tools/summarize_runs.py --task keypoints $OUT/lsnet_keypoint_slim_R_FPN $OUT/keypoint_rcnn_slim_R_FPN
