#!/usr/bin/env bash
# The cost columns of docs/results.md: each campaign model against its Detectron2 baseline, timed
# side by side in one process by tools/benchmark.py (CPU, 2 threads, 256 px, batch 8, 20 runs),
# with the seed-42 weights of the campaign (tools/experiments/campaign.sh) where they exist, so that
# inference runs on trained detections; a record per comparison in docs/results/benchmarks/.
#
#   bash tools/experiments/cost_benchmarks.sh                 # every comparison
#   ONLY="gfl gflv2" bash tools/experiments/cost_benchmarks.sh  # some of them
#   CAMPAIGN=output/campaign RECORDS=docs/results/benchmarks bash tools/experiments/cost_benchmarks.sh
#
# Run it on an otherwise idle machine: both models share the noise, but a busy machine widens it.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
CAMPAIGN=${CAMPAIGN:-output/campaign}
RECORDS=${RECORDS:-docs/results/benchmarks}
SHAPES=configs/Shapes
STICKMEN=configs/Stickmen
BOX_LOSS=$SHAPES/faster_rcnn_slim_R_FPN_focal_iou.yaml

# name | baseline config | baseline weights (campaign run) | compared config | its weights | compared MODEL.* opts
comparisons=(
  "iou_aware_retinanet|$SHAPES/retinanet_slim_R_FPN.yaml|shapes_boxes/retinanet|$SHAPES/iou_aware_retinanet_slim_R_FPN.yaml|shapes_boxes/iou_aware_retinanet|"
  "gfl|$SHAPES/retinanet_slim_R_FPN.yaml|shapes_boxes/retinanet|$SHAPES/gfl_slim_R_FPN.yaml|shapes_boxes/gfl|"
  "gflv2|$SHAPES/retinanet_slim_R_FPN.yaml|shapes_boxes/retinanet|$SHAPES/gflv2_slim_R_FPN.yaml|shapes_boxes/gflv2|"
  "gflv2_vs_gfl|$SHAPES/gfl_slim_R_FPN.yaml|shapes_boxes/gfl|$SHAPES/gflv2_slim_R_FPN.yaml|shapes_boxes/gflv2|"
  "lsnet|$SHAPES/retinanet_slim_R_FPN.yaml|shapes_boxes/retinanet|$SHAPES/lsnet_slim_R_FPN.yaml|shapes_boxes/lsnet|"
  "lsnet_qfl|$SHAPES/retinanet_slim_R_FPN.yaml|shapes_boxes/retinanet|$SHAPES/lsnet_qfl_slim_R_FPN.yaml|shapes_boxes/lsnet_qfl|"
  "lsnet_contour|$SHAPES/mask_rcnn_slim_R_FPN.yaml|masks/mask_rcnn|$SHAPES/lsnet_contour_slim_R_FPN.yaml|masks/lsnet_contour|"
  "lsnet_contour_qfl|$SHAPES/mask_rcnn_slim_R_FPN.yaml|masks/mask_rcnn|$SHAPES/lsnet_contour_qfl_slim_R_FPN.yaml|masks/lsnet_contour_qfl|"
  "lsnet_contour_qfl_p2|$SHAPES/mask_rcnn_slim_R_FPN.yaml|masks/mask_rcnn|$SHAPES/lsnet_contour_qfl_P2_slim_R_FPN.yaml|masks/lsnet_contour_qfl_p2|"
  "lsnet_pose|$STICKMEN/keypoint_rcnn_slim_R_FPN.yaml|pose/keypoint_rcnn|$STICKMEN/lsnet_keypoint_slim_R_FPN.yaml|pose/lsnet_pose|"
  "focal_iou_w10|$BOX_LOSS|box_losses/smooth_l1_w1|$BOX_LOSS|box_losses/focal_iou_w10|MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE focal_iou MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT 10.0"
)
BASE_OPTS_focal_iou_w10="MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE smooth_l1 MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT 1.0"

weights_of() {  # the campaign's seed-42 weights of a run, if trained
    local path="$CAMPAIGN/$1/seed42/model_final.pth"
    [ -f "$path" ] && echo "$path" || echo ""
}

mkdir -p "$RECORDS"
for line in "${comparisons[@]}"; do
    IFS='|' read -r name baseline base_run compare compare_run compare_opts <<< "$line"
    if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then continue; fi
    base_weights=$(weights_of "$base_run")
    compare_weights=$(weights_of "$compare_run")
    weights=()
    [ -n "$base_weights" ] && [ -n "$compare_weights" ] && weights=(--weights "$base_weights" "$compare_weights")
    base_opts_var="BASE_OPTS_$name"
    base_opts=${!base_opts_var:-}
    compare_flags=(--compare "$compare")
    if [ -n "$compare_opts" ]; then
        # One config, two settings: the shared opts set the baseline, --compare-opts the compared model.
        compare_flags=(--compare-opts "$compare_opts")
    fi
    # shellcheck disable=SC2086
    $PY tools/benchmark.py --config-file "$baseline" "${compare_flags[@]}" "${weights[@]}" \
        --threads 2 --image-size 256 --batch-size 8 --warmup 3 --repeats 20 \
        --record "$RECORDS/$name.json" $base_opts
done
