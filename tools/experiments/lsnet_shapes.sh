#!/usr/bin/env bash
# LSNet (boxes) vs RetinaNet vs GFL on `shapes`: the sweep of shapes_detectors_seeds.sh (which also
# trains IoU-aware RetinaNet and GFL V2 on the same seeds), seeds 42 and 43 by default.
# Writes output/experiments/shapes_detectors/.
set -euo pipefail
cd "$(dirname "$0")/../.."
SEEDS=${SEEDS:-42 43} exec bash tools/experiments/shapes_detectors_seeds.sh
