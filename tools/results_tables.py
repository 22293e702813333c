#!/usr/bin/env python
"""Rebuild the results tables of the docs from the committed run records (docs/results/).

    python tools/results_tables.py            # rewrite the tables in docs/results.md and README.md
    python tools/results_tables.py --check    # exit 1 (and show the difference) if one is stale

A table is declared in a Markdown file by a comment, and everything up to its closing comment is
generated:

    <!-- results-table records=shapes_boxes task=bbox runs=retinanet,gfl baseline=retinanet -->
    <!-- /results-table -->

``records``: a folder under docs/results/ holding RUN/seedK.json (``run_record.json`` files of
``train_net.py``, collected by ``tools/experiments/seeds.py --records``); ``runs``: which runs, in
order (default: all, sorted); ``task``: bbox, segm or keypoints; ``baseline``: a run the AP ratio
is taken against (optional); ``seeds``: yes (default) or no, a row per seed under each mean.
Each mean row is the mean +- sample standard deviation over the seeds found.
"""

import argparse
import difflib
import glob
import json
import math
import os
import re
import sys
from typing import Dict, List

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECORDS_ROOT = os.path.join(REPO_ROOT, "docs", "results")
DEFAULT_FILES = [os.path.join(REPO_ROOT, "docs", "results.md"), os.path.join(REPO_ROOT, "README.md")]
COLUMNS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AP60", "AP70", "AP80", "AP90")
TABLE = re.compile(r"(<!-- results-table (?P<spec>[^>]*?) -->\n)(?P<body>.*?)(<!-- /results-table -->)", re.S)


def mean_std(values: List[float]):
    """Mean and sample standard deviation (n - 1; 0 for one value) of the finite values."""
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return float("nan"), float("nan")
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
    return mean, math.sqrt(var)


def load_records(folder: str) -> Dict[str, List[Dict]]:
    """RUN -> its records (sorted by seed) under docs/results/<folder>/RUN/seed*.json."""
    runs = {}
    for path in sorted(glob.glob(os.path.join(RECORDS_ROOT, folder, "*", "seed*.json"))):
        with open(path) as f:
            runs.setdefault(os.path.basename(os.path.dirname(path)), []).append(json.load(f))
    for records in runs.values():
        records.sort(key=lambda r: r["seed"])
    return runs


def _number(value) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.2f}"


def render(spec: Dict[str, str]) -> str:
    """The Markdown table that ``spec`` (the comment's key=value pairs) declares."""
    folder, task = spec["records"], spec.get("task", "bbox")
    runs = load_records(folder)
    if not runs:
        raise SystemExit(f"results_tables: no records under docs/results/{folder}/")
    names = spec["runs"].split(",") if "runs" in spec else sorted(runs)
    missing = [n for n in names if n not in runs]
    if missing:
        raise SystemExit(f"results_tables: no records for {missing} under docs/results/{folder}/")
    baseline = spec.get("baseline")
    with_seeds = spec.get("seeds", "yes") == "yes"
    base_ap = mean_std([r["metrics"].get(task, {}).get("AP") for r in runs[baseline]])[0] if baseline else None
    header = [task, "seeds", *COLUMNS] + ([f"AP / {baseline}"] if baseline else []) + ["train time / run"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    commits = set()
    for name in names:
        records = runs[name]
        commits |= {(r.get("commit") or "?")[:10] + ("+" if r.get("dirty") else "") for r in records}
        cells = []
        for column in COLUMNS:
            mean, std = mean_std([r["metrics"].get(task, {}).get(column) for r in records])
            cells.append(f"{_number(mean)} +- {_number(std)}" if len(records) > 1 else _number(mean))
        if baseline:
            ap = mean_std([r["metrics"].get(task, {}).get("AP") for r in records])[0]
            cells.append(f"{ap / base_ap:.3f}x" if base_ap else "-")
        minutes = mean_std([(r.get("train_time_s") or float("nan")) / 60 for r in records])[0]
        seeds = ",".join(str(r["seed"]) for r in records)
        lines.append(f"| **{name}** | {seeds} | " + " | ".join(cells) + f" | {_number(minutes)} min |")
        if with_seeds and len(records) > 1:
            for r in records:
                values = [_number(r["metrics"].get(task, {}).get(c)) for c in COLUMNS]
                extra = [""] if baseline else []
                time = _number((r.get("train_time_s") or float("nan")) / 60)
                lines.append(f"| {name} seed {r['seed']} | | " + " | ".join(values + extra) + f" | {time} min |")
    machines = sorted({json.dumps([r.get("machine", {}).get(k) for k in ("cpu_cores", "device", "gpu")])
                       for name in names for r in runs[name]})  # fmt: skip
    described = "; ".join(
        f"{cores} CPU cores, {device}" + (f" ({gpu})" if gpu else "")
        for cores, device, gpu in map(json.loads, machines)
    )
    lines += ["", f"Records: `docs/results/{folder}/`; commit {', '.join(sorted(commits))}; {described}."]
    return "\n".join(lines) + "\n"


def _spec(text: str) -> Dict[str, str]:
    return dict(item.split("=", 1) for item in text.split())


def regenerate(text: str) -> str:
    """``text`` with every declared table rebuilt."""
    return TABLE.sub(lambda m: m.group(1) + render(_spec(m.group("spec"))) + m.group(4), text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="*", default=DEFAULT_FILES)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a table is stale")
    args = parser.parse_args(argv)
    stale = []
    for path in args.files:
        with open(path) as f:
            text = f.read()
        new = regenerate(text)
        if new == text:
            continue
        stale.append(path)
        if args.check:
            sys.stdout.writelines(
                difflib.unified_diff(text.splitlines(True), new.splitlines(True), path, "regenerated")
            )
        else:
            with open(path, "w") as f:
                f.write(new)
    if args.check and stale:
        print(f"\nStale results tables in {stale}: run python tools/results_tables.py", file=sys.stderr)
        return 1
    for path in stale:
        print(f"rewrote the tables of {os.path.relpath(path, REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
