#!/usr/bin/env python
"""Markdown table of the final evaluation of training runs, read from their metrics.json.

python tools/summarize_runs.py output/shapes/retinanet_slim_R_FPN output/shapes/iou_aware_...
"""

import argparse
import json
import os

COLUMNS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AP60", "AP70", "AP80", "AP90")


def final_results(run_dir: str, task: str = "bbox"):
    """The last evaluation that Detectron2's JSONWriter logged into ``run_dir/metrics.json``."""
    path = os.path.join(run_dir, "metrics.json")
    if not os.path.isfile(path):
        raise SystemExit(f"{path} not found: has the run finished?")
    last = {}
    with open(path) as f:
        for line in f:
            record = json.loads(line)
            if any(k.startswith(f"{task}/") for k in record):
                last = record
    return {k.split("/", 1)[1]: v for k, v in last.items() if k.startswith(f"{task}/")}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("runs", nargs="+", help="OUTPUT_DIR of each run")
    parser.add_argument("--task", default="bbox")
    args = parser.parse_args(argv)
    lines = ["| run | " + " | ".join(COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
    for run in args.runs:
        results = final_results(run, args.task)
        lines.append(
            f"| {os.path.basename(run.rstrip('/'))} | "
            + " | ".join(f"{results.get(c, float('nan')):.2f}" for c in COLUMNS)
            + " |"
        )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
