#!/usr/bin/env bash
# The CUDA benchmarks, on a machine with a GPU: every model of the package against
# its Detectron2 baseline (R-50-FPN COCO configs, 512 px, batch 2, score threshold 0), AMP off and
# on, inference and a training step timed on random images (no weights, nothing trained), and one
# deformable conv per implementation (fused is CPU-only; auto = grid_sample on CUDA).
# Writes 12 model benchmarks, each a JSON record in RECORDS (tools/results_tables.py renders the
# records of docs/results/benchmarks_cuda/ into docs/benchmarks.md) and a markdown table in OUT,
# and the conv benchmark's markdown table in OUT.
#
#   bash tools/experiments/gpu_benchmarks.sh            # on the GPU machine, from the repo root
#   # a dry run on the CPU, records and tables out of the way:
#   DEVICE=cpu SIZE=128 WARMUP=0 REPEATS=1 OUT=/tmp/dry RECORDS=/tmp/dry bash tools/experiments/gpu_benchmarks.sh
set -euo pipefail
PY="${PY:-.venv/bin/python}"
DEVICE="${DEVICE:-cuda}"
OUT="${OUT:-output/benchmarks_cuda}"
RECORDS="${RECORDS:-docs/results/benchmarks_cuda}"
mkdir -p "$OUT" "$RECORDS"
D2=detectron2://COCO-Detection
COMMON=(--device "$DEVICE" --image-size "${SIZE:-512}" --batch-size 2 --warmup "${WARMUP:-3}" --repeats "${REPEATS:-10}" --tasks inference,train)
THRESH=(MODEL.RETINANET.SCORE_THRESH_TEST 0.0 MODEL.LSNET.SCORE_THRESH_TEST 0.0 MODEL.GFL.SCORE_THRESH_TEST 0.0)

pairs=(
  "iou_aware_retinanet $D2/retinanet_R_50_FPN_1x.yaml configs/COCO-Detection/iou_aware_retinanet_R_50_FPN_1x.yaml"
  "gfl $D2/retinanet_R_50_FPN_1x.yaml configs/COCO-Detection/gfl_R_50_FPN_1x.yaml"
  "gflv2 configs/COCO-Detection/gfl_R_50_FPN_1x.yaml configs/COCO-Detection/gflv2_R_50_FPN_1x.yaml"
  "lsnet_box $D2/retinanet_R_50_FPN_1x.yaml configs/COCO-Detection/lsnet_R_50_FPN_1x.yaml"
  "lsnet_contour detectron2://COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml configs/COCO-InstanceSegmentation/lsnet_R_50_FPN_1x.yaml"
  "lsnet_keypoint detectron2://COCO-Keypoints/keypoint_rcnn_R_50_FPN_1x.yaml configs/COCO-Keypoints/lsnet_R_50_FPN_1x.yaml"
)
for pair in "${pairs[@]}"; do
  read -r name baseline compare <<< "$pair"
  for amp in "" "--amp"; do
    suffix="${amp:+_amp}"
    stem="benchmark_${DEVICE}_${name}${suffix}"
    "$PY" tools/benchmark.py --config-file "$baseline" --compare "$compare" "${COMMON[@]}" $amp \
      --output "$OUT/$stem.md" --record "$RECORDS/$stem.json" "${THRESH[@]}"
  done
done
"$PY" tools/benchmark_deform_conv.py --device "$DEVICE" --impls grid_sample torchvision \
  --channels 256 --size 64 --batch-size 2 --output "$OUT/benchmark_${DEVICE}_deform_conv.md"
