#!/usr/bin/env bash
# LSNet instance masks (contours) vs Detectron2's Mask R-CNN on `shapes` (1000 iterations x 8 images),
# and LSNet pose vs Detectron2's Keypoint R-CNN on `stickmen` (500 iterations x 8 images); same slim
# backbone and seed within each pair. Writes output/experiments/lsnet_tasks/; prints the tables.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
OUT=output/experiments/lsnet_tasks
POSE_SCHEDULE="SOLVER.MAX_ITER 500 SOLVER.STEPS (400,475) SOLVER.CHECKPOINT_PERIOD 250"
run() {  # config, extra overrides
    local name
    name=$(basename "$1")
    if [ ! -f $OUT/$name/model_final.pth ]; then
        $PY train_net.py --config-file configs/$1.yaml SEED 42 OUTPUT_DIR $OUT/$name ${2:-}
    fi
}
run Shapes/lsnet_contour_slim_R_FPN
run Shapes/mask_rcnn_slim_R_FPN
run Stickmen/lsnet_keypoint_slim_R_FPN "$POSE_SCHEDULE"
run Stickmen/keypoint_rcnn_slim_R_FPN "$POSE_SCHEDULE"
$PY tools/summarize_runs.py --task segm $OUT/lsnet_contour_slim_R_FPN $OUT/mask_rcnn_slim_R_FPN
$PY tools/summarize_runs.py --task bbox $OUT/lsnet_contour_slim_R_FPN $OUT/mask_rcnn_slim_R_FPN
$PY tools/summarize_runs.py --task keypoints $OUT/lsnet_keypoint_slim_R_FPN $OUT/keypoint_rcnn_slim_R_FPN
$PY tools/summarize_runs.py --task bbox $OUT/lsnet_keypoint_slim_R_FPN $OUT/keypoint_rcnn_slim_R_FPN
