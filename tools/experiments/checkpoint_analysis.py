#!/usr/bin/env python
"""Run tools/analyze.py on several checkpoints of each seed of a training run and keep each report
as a record: how the IoU branch's ranking (alpha sweep) and its correlation with the true IoU
develop as the model trains, on the same weights.

    python tools/experiments/checkpoint_analysis.py --run-dir output/campaign/mechanisms_3x/iou_aware_retinanet_3x \
        --records docs/results/mechanisms_3x/iou_aware_retinanet_3x \
        --checkpoints model_0000999.pth model_0001999.pth model_final.pth --alpha-sweep 0,0.25,0.5,0.75,1

For every RUN_DIR/seedK holding the checkpoints, analyze.py runs with that run's config.yaml and each
checkpoint (into RUN_DIR/seedK/analysis_<checkpoint>/), and its report plus the seed, checkpoint,
iteration and commit is written to RECORDS/seedK_<checkpoint>.json. An existing record is kept
(resumable).
"""

import argparse
import json
import os
import re
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO_ROOT, "tools"))

import analyze  # noqa: E402

from iou_aware.engine.run_record import git_commit, nan_to_none  # noqa: E402


def iteration_of(checkpoint: str, max_iter: int) -> int:
    """Iterations done at a checkpoint: model_0000999.pth -> 1000; model_final.pth -> max_iter."""
    found = re.match(r"model_(\d+)\.pth$", checkpoint)
    return int(found.group(1)) + 1 if found else max_iter


def analyze_run(run_dir, records_dir, checkpoints, alpha_sweep="", upper_bound=False, opts=()):
    """Analyse every seed folder of ``run_dir``; return the records written (or found)."""
    records = []
    for seed_dir in sorted(d for d in os.listdir(run_dir) if re.fullmatch(r"seed\d+", d)):
        seed_path = os.path.join(run_dir, seed_dir)
        final = os.path.join(seed_path, "run_record.json")
        if not os.path.isfile(final):
            continue  # not finished
        with open(final) as f:
            run = json.load(f)
        for checkpoint in checkpoints:
            target = os.path.join(records_dir, f"{seed_dir}_{os.path.splitext(checkpoint)[0]}.json")
            if os.path.isfile(target):
                with open(target) as f:
                    records.append(json.load(f))
                continue
            weights = os.path.join(seed_path, checkpoint)
            if not os.path.isfile(weights):
                raise SystemExit(f"[checkpoint_analysis] {weights} not found")
            argv = ["--config-file", os.path.join(seed_path, "config.yaml"), "--output",
                    os.path.join(seed_path, f"analysis_{os.path.splitext(checkpoint)[0]}")]  # fmt: skip
            argv += ["--alpha-sweep", alpha_sweep] if alpha_sweep else []
            argv += ["--upper-bound"] if upper_bound else []
            report = analyze.main(argv + ["MODEL.WEIGHTS", weights, *opts])
            commit, dirty = git_commit()
            record = {
                "seed": run["seed"],
                "checkpoint": checkpoint,
                "iteration": iteration_of(checkpoint, run["iterations"]),
                "config": run["config"],
                "overrides": run["overrides"],
                "commit": commit,
                "dirty": dirty,
                "analysis": nan_to_none({k: v for k, v in report.items() if k not in ("config", "weights")}),
            }
            os.makedirs(records_dir, exist_ok=True)
            with open(target + ".tmp", "w") as f:
                json.dump(record, f, indent=1, sort_keys=True)
                f.write("\n")
            os.replace(target + ".tmp", target)
            records.append(record)
    return records


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", required=True, help="a seeds.py run folder holding seedK/ folders")
    parser.add_argument("--records", required=True, help="where the analysis records go")
    parser.add_argument("--checkpoints", nargs="+", required=True)
    parser.add_argument("--alpha-sweep", default="")
    parser.add_argument("--upper-bound", action="store_true")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides for analyze.py")
    args = parser.parse_args(argv)
    return analyze_run(args.run_dir, args.records, args.checkpoints, args.alpha_sweep, args.upper_bound, args.opts)


if __name__ == "__main__":
    main()
