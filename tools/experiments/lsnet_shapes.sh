#!/usr/bin/env bash
# LSNet (boxes) vs RetinaNet vs GFL on `shapes`: 1000 iterations x 8 images, same slim backbone,
# seeds 42 and 43 (SEEDS="..." to change). Resumable: finished runs are skipped.
# Writes output/experiments/lsnet_boxes/ (results.md and a plot).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
SEEDS=${SEEDS:-42 43}
$PY tools/experiments/seeds.py --output output/experiments/lsnet_boxes --seeds $SEEDS --tasks bbox \
    --run retinanet configs/Shapes/retinanet_slim_R_FPN.yaml \
    --run gfl configs/Shapes/gfl_slim_R_FPN.yaml \
    --run lsnet configs/Shapes/lsnet_slim_R_FPN.yaml
