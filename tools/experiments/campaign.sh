#!/usr/bin/env bash
# The results campaign behind docs/results.md: every comparison over seeds 42 43 44 with the same
# schedule for both sides, trained one run at a time by tools/experiments/seeds.py. Each finished
# run's record is copied to docs/results/<group>/<run>/seed<k>.json, from which
# tools/results_tables.py generates the tables. Resumable: a finished run is skipped.
#
#   bash tools/experiments/campaign.sh                        # every group, in this order
#   CAMPAIGN_GROUPS="shapes_boxes masks" bash tools/experiments/campaign.sh
#   SEEDS="42" OUT=output/campaign bash tools/experiments/campaign.sh
#
# Groups (1x = 1000 iterations x 8 images from scratch, the Shapes configs' schedule):
#   shapes_boxes     RetinaNet, IoU-aware RetinaNet, GFL, GFL V2, LSNet (reference, QFL) on `shapes`,
#                    then the IoU-aware runs analysed (tools/experiments/checkpoint_analysis.py)
#   box_losses       Faster R-CNN: smooth L1 at weight 1 and 10; IoU, GIoU, Focal-IoU at 10
#   masks            Mask R-CNN and the LSNet contour configs on `shapes`
#   pose             Keypoint R-CNN and LSNet pose on `stickmen`
#   mechanisms_3x    IoU-aware RetinaNet, GFL and GFL V2 at 3x (checkpoints at 1x and 2x kept), then
#                    the IoU-aware runs analysed at 1x / 2x / 3x (tools/experiments/checkpoint_analysis.py)
#   dgqp_init        GFL V2 at 1x with DGQP's quality starting near 1 (bias 4.6) instead of 0.5
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
SEEDS=${SEEDS:-42 43 44}
OUT=${OUT:-output/campaign}
RECORDS=${RECORDS:-docs/results}
CAMPAIGN_GROUPS=${CAMPAIGN_GROUPS:-shapes_boxes box_losses masks pose mechanisms_3x dgqp_init}
SHAPES=configs/Shapes
THREE_X=(SOLVER.MAX_ITER 3000 SOLVER.STEPS "(2400,2850)" SOLVER.CHECKPOINT_PERIOD 1000)

run_group() {
    local group=$1
    shift
    # shellcheck disable=SC2086
    $PY tools/experiments/seeds.py --output "$OUT/$group" --records "$RECORDS/$group" --seeds $SEEDS "$@"
}

for group in $CAMPAIGN_GROUPS; do
    case $group in
        shapes_boxes)
            run_group "$group" --tasks bbox \
                --run retinanet $SHAPES/retinanet_slim_R_FPN.yaml \
                --run iou_aware_retinanet $SHAPES/iou_aware_retinanet_slim_R_FPN.yaml \
                --run gfl $SHAPES/gfl_slim_R_FPN.yaml \
                --run gflv2 $SHAPES/gflv2_slim_R_FPN.yaml \
                --run lsnet $SHAPES/lsnet_slim_R_FPN.yaml \
                --run lsnet_qfl $SHAPES/lsnet_qfl_slim_R_FPN.yaml
            # The IoU-aware ranking on each seed's 1x weights: alpha sweep, true-IoU upper bound,
            # correlation of the predicted and the true IoU.
            $PY tools/experiments/checkpoint_analysis.py --run-dir "$OUT/$group/iou_aware_retinanet" \
                --records "$RECORDS/${group}_analysis/iou_aware_retinanet" --checkpoints model_final.pth \
                --alpha-sweep 0,0.25,0.5,0.75,1 --upper-bound ;;
        box_losses)
            config=$SHAPES/faster_rcnn_slim_R_FPN_focal_iou.yaml
            run_group "$group" --tasks bbox \
                --run smooth_l1_w1 $config MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE smooth_l1 MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT 1.0 \
                --run smooth_l1_w10 $config MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE smooth_l1 MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT 10.0 \
                --run iou_w10 $config MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE iou MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT 10.0 \
                --run giou_w10 $config MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE giou MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT 10.0 \
                --run focal_iou_w10 $config MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE focal_iou MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT 10.0 \
                --opts SOLVER.IMS_PER_BATCH 4 ;;
        masks)
            run_group "$group" --tasks segm,bbox \
                --run mask_rcnn $SHAPES/mask_rcnn_slim_R_FPN.yaml \
                --run lsnet_contour $SHAPES/lsnet_contour_slim_R_FPN.yaml \
                --run lsnet_contour_qfl $SHAPES/lsnet_contour_qfl_slim_R_FPN.yaml \
                --run lsnet_contour_qfl_p2 $SHAPES/lsnet_contour_qfl_P2_slim_R_FPN.yaml ;;
        pose)
            run_group "$group" --tasks keypoints,bbox \
                --run keypoint_rcnn configs/Stickmen/keypoint_rcnn_slim_R_FPN.yaml \
                --run lsnet_pose configs/Stickmen/lsnet_keypoint_slim_R_FPN.yaml ;;
        mechanisms_3x)
            run_group "$group" --tasks bbox \
                --run iou_aware_retinanet_3x $SHAPES/iou_aware_retinanet_slim_R_FPN.yaml "${THREE_X[@]}" \
                --run gfl_3x $SHAPES/gfl_slim_R_FPN.yaml "${THREE_X[@]}" \
                --run gflv2_3x $SHAPES/gflv2_slim_R_FPN.yaml "${THREE_X[@]}"
            # The IoU branch at 1x, 2x and 3x on the same weights: alpha sweep, true-IoU upper
            # bound, correlation of the predicted and the true IoU.
            $PY tools/experiments/checkpoint_analysis.py --run-dir "$OUT/$group/iou_aware_retinanet_3x" \
                --records "$RECORDS/${group}_analysis/iou_aware_retinanet_3x" \
                --checkpoints model_0000999.pth model_0001999.pth model_final.pth \
                --alpha-sweep 0,0.25,0.5,0.75,1 --upper-bound ;;
        dgqp_init)
            run_group "$group" --tasks bbox \
                --run gflv2_quality_starts_near_1 $SHAPES/gflv2_slim_R_FPN.yaml MODEL.GFL.DGQP_BIAS_INIT 4.6 ;;
        *) echo "unknown group $group" >&2; exit 2 ;;
    esac
done
