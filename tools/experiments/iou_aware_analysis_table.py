#!/usr/bin/env python
"""Markdown tables, mean +- std over seeds, of ``tools/analyze.py`` reports of IoU-aware models:
what the ranking rule S = p^alpha IoU^(1 - alpha) adds on the same weights, and how well each
confidence correlates with the true IoU.

    python tools/experiments/iou_aware_analysis_table.py \
        --analysis not_detached output/experiments/shapes_detectors/iou_aware_analysis_seed{42,43,44} \
        --analysis detached output/experiments/iou_aware_ablations/analysis_seed{42,43,44}

Each ``--analysis NAME DIR...`` is one model, one analysis folder (its results.json, written with
``--alpha-sweep`` including 0.5 and 1.0) per seed. Ranking table: AP at alpha 1 (p alone: the
ranking of a plain RetinaNet on these weights), at alpha 0.5 (the default), their difference,
the best alpha of each seed and, where analysed with ``--upper-bound``, AP with the true IoU.
Correlation table: Pearson r of the predicted IoU, p and S with the IoU of each detection's best
ground truth of its class / of any class, over all detections and over those with IoU > 0.
"""

import argparse
import json
import os
import sys
from typing import Dict, List

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from seeds import mean_std  # noqa: E402

FIELDS = (("pred_ious", "predicted IoU"), ("cls_scores", "p"), ("scores", "S"))
TARGETS = (
    ("", "same class, all"),
    ("_overlapping", "same class, IoU > 0"),
    ("_any_class", "any class, all"),
    ("_any_class_overlapping", "any class, IoU > 0"),
)


def load(folder: str) -> Dict:
    path = os.path.join(folder, "results.json")
    if not os.path.isfile(path):
        raise SystemExit(f"{path} not found: run tools/analyze.py --output {folder} first")
    with open(path) as f:
        report = json.load(f)
    sweep = report.get("alpha_sweep", {})
    if not {"0.5", "1.0"} <= set(sweep):
        raise SystemExit(f"{path}: its --alpha-sweep lacks 0.5 or 1.0 (has {sorted(sweep)})")
    return report


def _cell(values: List[float]) -> str:
    mean, std = mean_std(values)
    return f"{mean:.2f} +- {std:.2f}" if len(values) > 1 else f"{mean:.2f}"


def ranking_table(models: Dict[str, List[Dict]]) -> str:
    lines = [
        "| model | seeds | AP, alpha 1 (p only) | AP, alpha 0.5 | ranking gain | AP75, alpha 1 | AP75, alpha 0.5 "
        "| best alpha per seed | AP, true IoU |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, reports in models.items():
        p_only = [r["alpha_sweep"]["1.0"]["AP"] for r in reports]
        default = [r["alpha_sweep"]["0.5"]["AP"] for r in reports]
        best = [max(r["alpha_sweep"], key=lambda a: r["alpha_sweep"][a]["AP"]) for r in reports]
        upper = [r["upper_bound"]["AP"] for r in reports if "upper_bound" in r]
        lines.append(
            f"| {name} | {len(reports)} | {_cell(p_only)} | {_cell(default)} | {_cell([d - p for d, p in zip(default, p_only)])} "
            f"| {_cell([r['alpha_sweep']['1.0']['AP75'] for r in reports])} | {_cell([r['alpha_sweep']['0.5']['AP75'] for r in reports])} "
            f"| {', '.join(best)} | {_cell(upper) if upper else '-'} |"
        )
    return "\n".join(lines)


def correlation_table(models: Dict[str, List[Dict]]) -> str:
    header = "| model | confidence | " + " | ".join(label for _, label in TARGETS) + " |"
    lines = [header, "|---|---|" + "---|" * len(TARGETS)]
    for name, reports in models.items():
        for field, label in FIELDS:
            cells = []
            for suffix, _ in TARGETS:
                key = f"pearson_{field}{suffix}"
                values = [r["localization"][key] for r in reports if key in r["localization"]]
                cells.append(_cell(values) if values else "-")
            lines.append(f"| {name} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--analysis",
        nargs="+",
        action="append",
        required=True,
        metavar="NAME DIR",
        help="a model's name, then one tools/analyze.py output folder per seed; repeatable",
    )
    args = parser.parse_args(argv)
    models = {}
    for spec in args.analysis:
        if len(spec) < 2:
            raise SystemExit(f"--analysis needs NAME and at least one folder, got {spec}")
        models[spec[0]] = [load(folder) for folder in spec[1:]]
    text = ranking_table(models) + "\n\n" + correlation_table(models)
    print(text)
    return text


if __name__ == "__main__":
    main()
