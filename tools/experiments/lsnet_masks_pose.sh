#!/usr/bin/env bash
# LSNet instance masks (contours) vs Detectron2's Mask R-CNN on `shapes`, and LSNet pose vs
# Detectron2's Keypoint R-CNN on `stickmen`; 1000 iterations x 8 images, same slim backbone, seeds
# 42 and 43 (SEEDS="..." to change). Contours: the reference's focal loss, QFL classes, and QFL on
# P2-P6 (the recommended `shapes` model; about 35 min per seed on 2 idle cores); pose: the stickmen
# config (He-normal initial conv) and the reference's init beside it. Resumable:
# finished runs are skipped. Writes output/experiments/lsnet_masks/ and output/experiments/lsnet_pose/
# (results.md and a plot each).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
SEEDS=${SEEDS:-42 43}
$PY tools/experiments/seeds.py --output output/experiments/lsnet_pose --seeds $SEEDS --tasks keypoints,bbox \
    --run lsnet configs/Stickmen/lsnet_keypoint_slim_R_FPN.yaml \
    --run lsnet_reference_init configs/Stickmen/lsnet_keypoint_slim_R_FPN.yaml MODEL.LSNET.INITIAL_CONV_INIT normal \
    --run keypoint_rcnn configs/Stickmen/keypoint_rcnn_slim_R_FPN.yaml
$PY tools/experiments/seeds.py --output output/experiments/lsnet_masks --seeds $SEEDS --tasks segm,bbox \
    --run lsnet_contour configs/Shapes/lsnet_contour_slim_R_FPN.yaml \
    --run lsnet_contour_qfl configs/Shapes/lsnet_contour_qfl_slim_R_FPN.yaml \
    --run lsnet_contour_qfl_p2 configs/Shapes/lsnet_contour_qfl_P2_slim_R_FPN.yaml \
    --run mask_rcnn configs/Shapes/mask_rcnn_slim_R_FPN.yaml
