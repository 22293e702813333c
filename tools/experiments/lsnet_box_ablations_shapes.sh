#!/usr/bin/env bash
# What holds LSNet's boxes below GFL V1 on `shapes`: the training differences between the
# heads that dev/diagnose_lsnet.py points at (the class scores; docs/models/lsnet.md), each
# switched to GFL's choice on top of the reference LSNet (lsnet_slim_R_FPN.yaml), seeds 42 43
# (SEEDS="..." to change); ~16 min per run on 2 quiet cores:
#   qfl      MODEL.LSNET.CLASS_LOSS quality_focal (QFL: the class target is the refined box's IoU)
#   anchors  MODEL.LSNET.REFINE_ASSIGN_ON anchors (ATSS on 8-stride squares, not the initial boxes)
#   qfl_anchors  both
#   qfl_score    QFL + MODEL.LSNET.REFINE_LOSS_WEIGHTING score (GFL's score-weighted box losses)
# The reference LSNet runs are the campaign's (campaign.sh, group shapes_boxes). Resumable.
# Writes output/experiments/lsnet_box_ablations/ (results.md, ap_per_seed_bbox.png) and the run
# records to $RECORDS (default docs/results/lsnet_box_ablations/).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
SEEDS=${SEEDS:-42 43}
CONFIG=configs/Shapes/lsnet_slim_R_FPN.yaml
RUNS=${RUNS:-qfl anchors qfl_anchors}
args=()
for run in $RUNS; do
    case $run in
        qfl) args+=(--run lsnet_qfl $CONFIG MODEL.LSNET.CLASS_LOSS quality_focal) ;;
        anchors) args+=(--run lsnet_anchors $CONFIG MODEL.LSNET.REFINE_ASSIGN_ON anchors) ;;
        qfl_anchors) args+=(--run lsnet_qfl_anchors $CONFIG MODEL.LSNET.CLASS_LOSS quality_focal MODEL.LSNET.REFINE_ASSIGN_ON anchors) ;;
        qfl_score) args+=(--run lsnet_qfl_score $CONFIG MODEL.LSNET.CLASS_LOSS quality_focal MODEL.LSNET.REFINE_LOSS_WEIGHTING score) ;;
        *) echo "unknown run $run (use qfl, anchors, qfl_anchors, qfl_score)" >&2; exit 2 ;;
    esac
done
$PY tools/experiments/seeds.py --output output/experiments/lsnet_box_ablations --records "${RECORDS:-docs/results/lsnet_box_ablations}" --seeds $SEEDS --tasks bbox "${args[@]}"
