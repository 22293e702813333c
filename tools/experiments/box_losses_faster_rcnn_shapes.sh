#!/usr/bin/env bash
# Faster R-CNN on `shapes` with smooth L1 vs GIoU vs Focal-IoU in the ROI box head: same schedule
# (1000 iterations, batch 4) and data, seeds 42 43 44 (SEEDS="..." to change); ~7 min per run on
# 2 quiet cores. Resumable. Writes output/experiments/box_losses/ (results.md, ap_per_seed_bbox.png).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
SEEDS=${SEEDS:-42 43 44}
CONFIG=configs/Shapes/faster_rcnn_slim_R_FPN_focal_iou.yaml
# Smooth L1 works on deltas and keeps Detectron2's default weight 1; the IoU losses use 10.
$PY tools/experiments/seeds.py --output output/experiments/box_losses --seeds $SEEDS --tasks bbox \
    --run smooth_l1 $CONFIG MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE smooth_l1 MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT 1.0 \
    --run giou $CONFIG MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE giou MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT 10.0 \
    --run focal_iou $CONFIG MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE focal_iou MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT 10.0 \
    --opts SOLVER.IMS_PER_BATCH 4
