#!/usr/bin/env python
"""Train models for several seeds, one run at a time, and tabulate mean +- std over the seeds.

    python tools/experiments/seeds.py --output output/experiments/seeds/shapes --seeds 42 43 44 \
        --run retinanet configs/Shapes/retinanet_slim_R_FPN.yaml \
        --run gfl configs/Shapes/gfl_slim_R_FPN.yaml SOLVER.BASE_LR 0.005 \
        --tasks bbox --opts SOLVER.MAX_ITER 1000

Each ``--run NAME CONFIG [KEY VALUE ...]`` is trained once per seed with ``SEED k`` and everything
else equal, by ``train_net.py`` in a subprocess, into OUTPUT/NAME/seedK. A run whose
``final_metrics.json`` exists is skipped, so an interrupted sweep resumes where it stopped (a run
killed half-way restarts from its beginning); a finished run of another config, other overrides
or another commit of the code stops the sweep instead (``--reuse-other-commits`` keeps runs of
other commits). Writes OUTPUT/results.md (per task: mean +- std and
every seed's value of AP, AP50, AP75, APs, APm, APl, AP60..AP90, and the wall time of each run) and
OUTPUT/ap_per_seed_<task>.png (AP per model, one point per seed). With ``--records DIR``, each
finished run's record (``run_record.json``, written by ``train_net.py``) is copied to
DIR/NAME/seedK.json, the data the results tables are generated from (``tools/results_tables.py``).
"""

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from typing import Dict, List

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO_ROOT, "tools"))

from summarize_runs import final_results  # noqa: E402

from iou_aware.engine.run_record import git_commit  # noqa: E402

COLUMNS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AP60", "AP70", "AP80", "AP90")
FINAL = "final_metrics.json"


def finished_record(output_dir: str):
    """The final metrics a finished run wrote into ``output_dir``, or None."""
    final = os.path.join(output_dir, FINAL)
    if not os.path.isfile(final):
        return None
    with open(final) as f:
        return json.load(f)


def current_commit():
    """The git commit of the checkout that trains (None outside a checkout)."""
    return git_commit(REPO_ROOT)[0]


def check_finished_run(output_dir: str, record: Dict, config: str, opts: List[str], reuse_other_commits: bool) -> None:
    """Refuse to reuse a finished run that is not the one asked for: another config or overrides,
    or (unless ``reuse_other_commits``) another commit of the code, so that no table mixes a stale
    run with fresh ones."""
    asked = (os.path.abspath(config), list(opts))
    found = (os.path.abspath(record.get("config", "")), list(record.get("opts", [])))
    if found != asked:
        raise SystemExit(
            f"[seeds] {output_dir} holds a finished run of config {found[0]} with {found[1]}, not of {asked[0]} "
            f"with {asked[1]}: remove the folder or choose another --output"
        )
    run_record = os.path.join(output_dir, "run_record.json")
    if reuse_other_commits or not os.path.isfile(run_record):
        return
    with open(run_record) as f:
        trained_at = json.load(f).get("commit")
    now = current_commit()
    if trained_at and now and trained_at != now:
        raise SystemExit(
            f"[seeds] {output_dir} was trained at commit {trained_at[:10]}, the checkout is at {now[:10]}: "
            "remove the folder, choose another --output, or pass --reuse-other-commits to keep it"
        )


def train_once(
    train_script: str,
    config: str,
    seed: int,
    output_dir: str,
    opts: List[str],
    tasks: List[str],
    reuse_other_commits: bool = False,
) -> Dict:
    """Train one (config, seed) run unless its final metrics exist (and are of this config,
    overrides and commit: :func:`check_finished_run`); return them."""
    final = os.path.join(output_dir, FINAL)
    record = finished_record(output_dir)
    if record is not None:
        check_finished_run(output_dir, record, config, opts, reuse_other_commits)
        return record
    os.makedirs(output_dir, exist_ok=True)
    command = [
        sys.executable,
        train_script,
        "--config-file",
        config,
        *opts,
        "SEED",
        str(seed),
        "OUTPUT_DIR",
        output_dir,
    ]
    print("[seeds]", " ".join(command), flush=True)
    start = time.monotonic()
    with open(os.path.join(output_dir, "seeds_log.txt"), "w") as log:
        status = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT).returncode
    wall = time.monotonic() - start
    if status != 0:
        raise SystemExit(f"[seeds] training failed (exit {status}); see {output_dir}/seeds_log.txt")
    record = {"config": config, "seed": seed, "opts": opts, "wall_time_s": wall}
    record.update({task: final_results(output_dir, task) for task in tasks})
    with open(final + ".tmp", "w") as f:
        json.dump(record, f, indent=2)
    os.replace(final + ".tmp", final)
    return record


def copy_record(output_dir: str, records_dir: str, name: str, seed: int) -> None:
    """Copy the run record of a finished run to ``records_dir/name/seed<seed>.json``."""
    source = os.path.join(output_dir, "run_record.json")
    if not os.path.isfile(source):
        raise SystemExit(f"[seeds] {source} not found: the run was trained by a train_net.py that writes no record")
    target = os.path.join(records_dir, name, f"seed{seed}.json")
    os.makedirs(os.path.dirname(target), exist_ok=True)
    shutil.copyfile(source, target)


def mean_std(values: List[float]):
    """Mean and sample standard deviation (n - 1; 0 for one value), ignoring NaNs."""
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return float("nan"), float("nan")
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
    return mean, math.sqrt(var)


def table(records: Dict[str, List[Dict]], task: str) -> str:
    """Markdown: a mean +- std row per model, then its seeds' values; the wall time per run."""
    lines = [
        f"| {task} | seeds | " + " | ".join(COLUMNS) + " | wall time / run |",
        "|---|---|" + "---|" * (len(COLUMNS) + 1),
    ]
    for name, runs in records.items():
        cells = []
        for column in COLUMNS:
            mean, std = mean_std([r[task].get(column, float("nan")) for r in runs])
            cells.append(f"{mean:.2f} +- {std:.2f}")
        wall, _ = mean_std([r["wall_time_s"] for r in runs])
        seeds = ",".join(str(r["seed"]) for r in runs)
        lines.append(f"| **{name}** | {seeds} | " + " | ".join(cells) + f" | {wall / 60:.1f} min |")
        for r in runs:
            values = " | ".join(f"{r[task].get(c, float('nan')):.2f}" for c in COLUMNS)
            lines.append(f"| {name} seed {r['seed']} | | {values} | {r['wall_time_s'] / 60:.1f} min |")
    return "\n".join(lines)


def plot(records: Dict[str, List[Dict]], task: str, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(records), 4))
    for i, (name, runs) in enumerate(records.items()):
        values = [r[task].get("AP", float("nan")) for r in runs]
        ax.scatter([i] * len(values), values, color="tab:blue", zorder=3)
        mean, std = mean_std(values)
        ax.errorbar([i + 0.15], [mean], yerr=[std], fmt="_", color="black", capsize=4, markersize=14)
    ax.set_xticks(range(len(records)))
    ax.set_xticklabels(list(records), rotation=20, ha="right")
    ax.set_ylabel(f"{task} AP")
    ax.set_title("AP per seed (dots) and mean +- std")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--run",
        nargs="+",
        action="append",
        required=True,
        metavar="NAME CONFIG [KEY VALUE]",
        help="a model: its name, config file and its own overrides; repeatable",
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[42, 43, 44])
    parser.add_argument("--output", required=True)
    parser.add_argument(
        "--tasks", default="bbox", help="comma-separated COCO tasks to tabulate (bbox, segm, keypoints)"
    )
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[], help="KEY VALUE overrides for every run")
    parser.add_argument("--train-script", default=os.path.join(REPO_ROOT, "train_net.py"))
    parser.add_argument("--records", help="copy each finished run's run_record.json to RECORDS/NAME/seedK.json")
    parser.add_argument(
        "--reuse-other-commits",
        action="store_true",
        help="keep finished runs trained at another commit of the code (by default they stop the sweep)",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="train nothing: tabulate the runs whose final metrics exist (a sweep still running, or cut short)",
    )
    args = parser.parse_args(argv)
    tasks = [t for t in args.tasks.split(",") if t]
    runs = []
    for spec in args.run:
        if len(spec) < 2 or len(spec) % 2:
            raise SystemExit(f"--run needs NAME CONFIG and KEY VALUE pairs, got {spec}")
        runs.append((spec[0], spec[1], spec[2:]))
    missing = [config for _, config, _ in runs if not os.path.isfile(config)]
    if missing:
        raise SystemExit(f"config files not found: {missing}")
    records = {name: [] for name, _, _ in runs}
    for seed in args.seeds:  # seed-major: a partial sweep already compares every model
        for name, config, opts in runs:
            output_dir = os.path.join(args.output, name, f"seed{seed}")
            if args.report_only:
                record = finished_record(output_dir)
                records[name] += [record] if record is not None else []
                continue
            run_opts = list(args.opts) + opts
            records[name].append(
                train_once(args.train_script, config, seed, output_dir, run_opts, tasks, args.reuse_other_commits)
            )
            if args.records:
                copy_record(output_dir, args.records, name, seed)
    records = {name: runs_of_model for name, runs_of_model in records.items() if runs_of_model}
    if not records:
        raise SystemExit(f"[seeds] no finished run under {args.output}")
    report = [
        f"Command: `python tools/experiments/seeds.py {' '.join(argv if argv is not None else sys.argv[1:])}`",
        "",
    ]
    for task in tasks:
        report += [table(records, task), ""]
        plot(records, task, os.path.join(args.output, f"ap_per_seed_{task}.png"))
    with open(os.path.join(args.output, "results.md"), "w") as f:
        f.write("\n".join(report))
    print("\n".join(report))
    return records


if __name__ == "__main__":
    main()
