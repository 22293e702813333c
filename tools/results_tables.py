#!/usr/bin/env python
"""Rebuild the results tables of the docs from the committed run records (docs/results/).

    python tools/results_tables.py            # rewrite the tables in README.md and docs/**/*.md
    python tools/results_tables.py --check    # exit 1 (and show the difference) if one is stale

A table is declared in a Markdown file by a comment, and everything up to its closing comment is
generated:

    <!-- results-table records=shapes_boxes task=bbox runs=retinanet,gfl baseline=retinanet -->
    <!-- /results-table -->

``records``: a folder under docs/results/ (or several, comma-separated) holding RUN/seedK.json
(``run_record.json`` files of ``train_net.py``, collected by ``tools/experiments/seeds.py
--records``); ``runs``: which runs, in order (default: all, sorted); ``task``: bbox, segm or
keypoints; ``baseline``: a run the AP ratio is taken against, over the seeds both runs have
(optional); ``seeds``: yes (default) or no, a row per seed under each mean.
Each mean row is the mean +- sample standard deviation over the seeds found. With a baseline, the
table also gives each run's cost: its inference and training-step time over the baseline's, from a
benchmark record (``tools/benchmark.py --record``, under docs/results/benchmarks/) that timed the
baseline's model against the run's model side by side (matched by config file and ``MODEL.*``
overrides; "-" where no such record exists).

Two more kinds of table:

    <!-- model-table rows=shapes_boxes/gfl/bbox/retinanet,masks/lsnet_contour/segm/mask_rcnn -->
    <!-- /model-table -->

one row per GROUP/RUN/TASK/BASELINE: the run's config, its AP (mean +- std, seeds), and its AP,
inference and training-step ratios against the baseline run of the same group; and

    <!-- benchmark-table records=benchmarks -->
    <!-- /benchmark-table -->

one row per benchmark record of the folder: both models' median times and the ratios; and

    <!-- analysis-table records=mechanisms_3x_analysis/iou_aware_retinanet_3x -->
    <!-- /analysis-table -->

the records of ``tools/experiments/checkpoint_analysis.py`` (``tools/analyze.py`` reports of an
IoU-aware model per seed and checkpoint), one row per iteration: what the ranking S = p^alpha
IoU^(1 - alpha) adds on the same weights (AP at alpha 1 and 0.5, their difference, the same
difference of AP50 and AP90, the best alpha per seed, AP with the true IoU), then how each
confidence correlates with the true IoU.
"""

import argparse
import difflib
import glob
import json
import math
import os
import re
import sys
from typing import Dict, List, Tuple

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECORDS_ROOT = os.path.join(REPO_ROOT, "docs", "results")


def default_files() -> List[str]:
    """The README and every Markdown page of docs/."""
    pages = glob.glob(os.path.join(REPO_ROOT, "docs", "**", "*.md"), recursive=True)
    return [os.path.join(REPO_ROOT, "README.md"), *sorted(pages)]


COLUMNS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AP60", "AP70", "AP80", "AP90")
TABLE = re.compile(
    r"(<!-- (?P<kind>results-table|model-table|benchmark-table|analysis-table) (?P<spec>[^>]*?) -->\n)"
    r"(?P<body>.*?)(<!-- /(?P=kind) -->)",
    re.S,
)
BENCHMARKS = "benchmarks"
# Overrides that do not change the model, left out when a run is matched with a benchmark record.
_NOT_MODEL_KEYS = ("MODEL.WEIGHTS", "MODEL.DEVICE")


def mean_std(values: List[float]):
    """Mean and sample standard deviation (n - 1; 0 for one value) of the finite values."""
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return float("nan"), float("nan")
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
    return mean, math.sqrt(var)


def load_records(folders: str) -> Dict[str, List[Dict]]:
    """RUN -> its records (sorted by seed) under docs/results/<folder>/RUN/seed*.json, for each of
    the comma-separated ``folders`` (a run name may appear in one of them only)."""
    runs, found_in = {}, {}
    for folder in folders.split(","):
        for path in sorted(glob.glob(os.path.join(RECORDS_ROOT, folder, "*", "seed*.json"))):
            name = os.path.basename(os.path.dirname(path))
            if found_in.setdefault(name, folder) != folder:
                raise SystemExit(f"results_tables: run {name} is in both {found_in[name]} and {folder}")
            with open(path) as f:
                runs.setdefault(name, []).append(json.load(f))
    for records in runs.values():
        records.sort(key=lambda r: r["seed"])
    return runs


def _number(value) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.2f}"


def model_key(config: str, opts: List[str]) -> Tuple[str, Tuple[Tuple[str, str], ...]]:
    """What identifies a model for timing: the config file (as a repository-relative path) and its
    ``MODEL.*`` overrides but the weights and the device (seeds, schedules and data do not change
    the model's cost)."""
    config = os.path.normpath(os.path.relpath(config, REPO_ROOT) if os.path.isabs(config) else config)
    settings = dict(zip(opts[0::2], opts[1::2]))  # a later override of a key wins, as in yacs
    return config, tuple(
        sorted((k, v) for k, v in settings.items() if k.startswith("MODEL.") and k not in _NOT_MODEL_KEYS)
    )


def load_benchmarks(folder: str = BENCHMARKS) -> List[Dict]:
    """The benchmark records (``tools/benchmark.py --record``) under docs/results/<folder>/, by name."""
    records = []
    for path in sorted(glob.glob(os.path.join(RECORDS_ROOT, folder, "*.json"))):
        with open(path) as f:
            record = json.load(f)
        record["file"] = os.path.relpath(path, REPO_ROOT)
        records.append(record)
    return records


def find_cost(benchmarks: List[Dict], baseline: Dict, run: Dict):
    """The ratios (run / baseline) of the benchmark record that timed ``baseline``'s model against
    ``run``'s (two run records); None when there is none. The same model against itself is 1."""
    base_key = model_key(baseline["config"], baseline.get("overrides", []))
    run_key = model_key(run["config"], run.get("overrides", []))
    if base_key == run_key:
        return {"inference": 1.0, "train": 1.0}
    for record in benchmarks:
        models = record.get("models", [])
        if len(models) == 2 and [model_key(m["config"], m["opts"]) for m in models] == [base_key, run_key]:
            return record["ratios"]
    return None


def _ratio(value) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _seed_aps(records: List[Dict], task: str, column: str = "AP") -> List[float]:
    return [r["metrics"].get(task, {}).get(column) for r in records]


def _runs(folder: str, names: List[str]) -> Dict[str, List[Dict]]:
    runs = load_records(folder)
    if not runs:
        raise SystemExit(f"results_tables: no records under docs/results/{folder}/")
    missing = [n for n in names if n not in runs]
    if missing:
        raise SystemExit(f"results_tables: no records for {missing} under docs/results/{folder}/")
    return runs


def _provenance(runs: Dict[str, List[Dict]], names: List[str]) -> str:
    records = [r for name in names for r in runs[name]]
    commits = {(r.get("commit") or "?")[:10] + ("+" if r.get("dirty") else "") for r in records}
    machines = sorted(
        {json.dumps([r.get("machine", {}).get(k) for k in ("cpu_cores", "device", "gpu")]) for r in records}
    )
    described = "; ".join(
        f"{cores} CPU cores, {device}" + (f" ({gpu})" if gpu else "")
        for cores, device, gpu in map(json.loads, machines)
    )
    return f"commit {', '.join(sorted(commits))}; {described}"


def paired_mean_aps(records: List[Dict], baseline: List[Dict], task: str):
    """Mean AP of a run and of its baseline over the seeds both have (NaN, NaN without one), so
    that a ratio compares the same seeds."""
    seeds = {r["seed"] for r in records} & {r["seed"] for r in baseline}
    return (
        mean_std(_seed_aps([r for r in records if r["seed"] in seeds], task))[0],
        mean_std(_seed_aps([r for r in baseline if r["seed"] in seeds], task))[0],
    )


def render(spec: Dict[str, str]) -> str:
    """The Markdown results table that ``spec`` (the comment's key=value pairs) declares."""
    folder, task = spec["records"], spec.get("task", "bbox")
    names = spec["runs"].split(",") if "runs" in spec else None
    runs = _runs(folder, names or [])
    names = names or sorted(runs)
    baseline = spec.get("baseline")
    with_seeds = spec.get("seeds", "yes") == "yes"
    benchmarks = load_benchmarks()
    header = [task, "seeds", *COLUMNS]
    if baseline:
        header += [f"AP / {baseline}", f"inference / {baseline}", f"train step / {baseline}"]
    header += ["train time / run"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in names:
        records = runs[name]
        cells = []
        for column in COLUMNS:
            cells.append(_cell(_seed_aps(records, task, column)))
        if baseline:
            ap, base_ap = paired_mean_aps(records, runs[baseline], task)
            cost = find_cost(benchmarks, runs[baseline][0], records[0]) or {}
            cells += [
                f"{ap / base_ap:.3f}x" if base_ap and math.isfinite(base_ap) else "-",
                _ratio(cost.get("inference")),
                _ratio(cost.get("train")),
            ]
        minutes = mean_std([(r.get("train_time_s") or float("nan")) / 60 for r in records])[0]
        seeds = ",".join(str(r["seed"]) for r in records)
        lines.append(f"| **{name}** | {seeds} | " + " | ".join(cells) + f" | {_number(minutes)} min |")
        if with_seeds and len(records) > 1:
            for r in records:
                values = [_number(r["metrics"].get(task, {}).get(c)) for c in COLUMNS]
                extra = ["", "", ""] if baseline else []
                time = _number((r.get("train_time_s") or float("nan")) / 60)
                lines.append(f"| {name} seed {r['seed']} | | " + " | ".join(values + extra) + f" | {time} min |")
    folders = ", ".join(f"`docs/results/{f}/`" for f in folder.split(","))
    lines += ["", f"Records: {folders}; {_provenance(runs, names)}."]
    if baseline:
        lines[-1] += f" Costs: `docs/results/{BENCHMARKS}/`, see [benchmarks](benchmarks.md)."
    return "\n".join(lines) + "\n"


def render_models(spec: Dict[str, str]) -> str:
    """One row per GROUP/RUN/TASK/BASELINE of ``spec["rows"]``: config, AP with its seeds, and the
    ratios of AP, inference and training-step time against the baseline run of the same group."""
    benchmarks = load_benchmarks()
    header = ["model", "config", "task", "AP (mean +- std)", "seeds", "baseline", "AP ratio", "inference", "train step"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in spec["rows"].split(","):
        group, name, task, baseline = row.split("/")
        runs = _runs(group, [name, baseline])
        records, base = runs[name], runs[baseline]
        paired_ap, base_ap = paired_mean_aps(records, base, task)
        cost = find_cost(benchmarks, base[0], records[0]) or {}
        config = records[0]["config"]
        lines.append(
            f"| {name} | [`{os.path.basename(config)}`]({config}) | {task} | "
            f"{_cell(_seed_aps(records, task))} | "
            f"{','.join(str(r['seed']) for r in records)} | {baseline} | "
            f"{f'{paired_ap / base_ap:.2f}x' if base_ap and math.isfinite(base_ap) else '-'} | "
            f"{_ratio(cost.get('inference'))} | "
            f"{_ratio(cost.get('train'))} |"
        )
    return "\n".join(lines) + "\n"


def render_benchmarks(spec: Dict[str, str]) -> str:
    """One row per benchmark record of docs/results/<records>/: both models' median times and the ratios."""
    folder = spec.get("records", BENCHMARKS)
    records = load_benchmarks(folder)
    if not records:
        raise SystemExit(f"results_tables: no benchmark records under docs/results/{folder}/")
    header = ["baseline", "compared", "weights", "device", "image", "batch", "inference ms", "ratio", "train step ms",
              "ratio", "GFLOPs ratio", "params ratio"]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    commands = []
    for number, record in enumerate(records, 1):
        base, other = record["models"]
        settings, ratios, machine = record["settings"], record["ratios"], record["machine"]
        device = machine.get("gpu") or f"{machine.get('cpu_cores')}-core CPU, {settings['threads']} threads"
        device += ", AMP" if settings.get("amp") else ""

        def ms(model, key):
            return "-" if model.get(key) is None else f"{1000 * model[key]:.1f}"

        lines.append(
            f"| {base['name']} | {other['name']} [{number}] | {'trained' if base.get('weights') else 'initial'} | "
            f"{device} | {settings['image_size']} px | "
            f"{settings['batch_size']} | {ms(base, 'inference_s')} / {ms(other, 'inference_s')} | "
            f"{_ratio(ratios.get('inference'))} | {ms(base, 'train_s')} / {ms(other, 'train_s')} | "
            f"{_ratio(ratios.get('train'))} | {_ratio(ratios.get('flops'))} | {_ratio(ratios.get('params'))} |"
        )
        commit = (record.get("commit") or "?")[:10] + ("+" if record.get("dirty") else "")
        commands.append(f"{number}. `{record['file']}` (commit {commit}): `{record['command']}`")
    return "\n".join(lines + ["", *commands]) + "\n"


CONFIDENCE_FIELDS = (("pred_ious", "predicted IoU"), ("cls_scores", "p"), ("scores", "S"))
# Columns of the correlation table: Pearson r of a confidence with the true IoU on a subset of the
# detections, then the confidence's mean on the matched (IoU >= 0.5) and unmatched ones.
CORRELATION_COLUMNS = (
    ("pearson_{}", "r, same class, all"),
    ("pearson_{}_overlapping", "r, same class, IoU > 0"),
    ("pearson_{}_matched", "r, same class, IoU >= 0.5"),
    ("pearson_{}_any_class", "r, any class, all"),
    ("pearson_{}_any_class_overlapping", "r, any class, IoU > 0"),
    ("mean_{}_matched", "mean, IoU >= 0.5"),
    ("mean_{}_unmatched", "mean, IoU < 0.5"),
)


def _cell(values: List[float]) -> str:
    """The cell of a metric: mean +- std over several seeds, the value of one, "-" where no seed has it."""
    mean, std = mean_std(values)
    return f"{_number(mean)} +- {_number(std)}" if len(values) > 1 and math.isfinite(mean) else _number(mean)


def ranking_rows(name: str, reports: List[Dict]) -> str:
    """A row of the ranking table over ``reports`` (analyze.py reports of one model, one per seed,
    each with an alpha sweep holding 0.5 and 1.0)."""
    for report in reports:
        if not {"0.5", "1.0"} <= set(report.get("alpha_sweep", {})):
            raise SystemExit(f"results_tables: an analysis of {name} lacks alpha 0.5 or 1.0 in its sweep")
    sweeps = [r["alpha_sweep"] for r in reports]
    best = [max(sweep, key=lambda a: sweep[a]["AP"]) for sweep in sweeps]
    upper = [r["upper_bound"]["AP"] for r in reports if "upper_bound" in r]

    def at(alpha, column):
        return _cell([sweep[alpha][column] for sweep in sweeps])

    def gain(column):  # the column at alpha 0.5 minus at alpha 1, "-" where a record lacks it
        if any(column not in sweep["0.5"] or column not in sweep["1.0"] for sweep in sweeps):
            return "-"
        return _cell([sweep["0.5"][column] - sweep["1.0"][column] for sweep in sweeps])

    cells = [
        at("1.0", "AP"),
        at("0.5", "AP"),
        gain("AP"),
        at("1.0", "AP75"),
        at("0.5", "AP75"),
        gain("AP50"),
        gain("AP90"),
        ", ".join(best),
        _cell(upper) if upper else "-",
    ]
    return f"| {name} | {len(reports)} | " + " | ".join(cells) + " |"


def correlation_columns(reports: List[Dict]) -> List[Tuple[str, str]]:
    """The columns of CORRELATION_COLUMNS that some report holds (older records lack the later ones)."""
    keys = {k for r in reports for k in r.get("localization", {})}
    return [(t, label) for t, label in CORRELATION_COLUMNS if any(t.format(f) in keys for f, _ in CONFIDENCE_FIELDS)]


def correlation_rows(name: str, reports: List[Dict], columns: List[Tuple[str, str]]) -> List[str]:
    """Rows of the correlation table: each confidence's statistics, mean +- std over seeds."""
    rows = []
    for field, label in CONFIDENCE_FIELDS:
        cells = []
        for template, _ in columns:
            key = template.format(field)
            values = [r["localization"][key] for r in reports if r["localization"].get(key) is not None]
            cells.append(_cell(values) if values else "-")
        rows.append(f"| {name} | {label} | " + " | ".join(cells) + " |")
    return rows


def analysis_tables(models: Dict[str, List[Dict]]) -> str:
    """The ranking table and the correlation table of ``models`` (name -> analyze.py reports)."""
    ranking = [
        "| model | seeds | AP, alpha 1 (p only) | AP, alpha 0.5 | ranking gain | AP75, alpha 1 | AP75, alpha 0.5 "
        "| AP50 gain | AP90 gain | best alpha per seed | AP, true IoU |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    columns = correlation_columns([r for reports in models.values() for r in reports])
    correlation = [
        "| model | confidence | " + " | ".join(label for _, label in columns) + " |",
        "|---|---|" + "---|" * len(columns),
    ]
    for name, reports in models.items():
        ranking.append(ranking_rows(name, reports))
        correlation += correlation_rows(name, reports, columns)
    return "\n".join(ranking + [""] + correlation) + "\n"


def render_analysis(spec: Dict[str, str]) -> str:
    """The analysis tables of the checkpoint-analysis records under docs/results/<records>/, one
    model row per iteration (the seeds of that checkpoint pooled)."""
    folder = spec["records"]
    paths = sorted(glob.glob(os.path.join(RECORDS_ROOT, folder, "seed*_*.json")))
    if not paths:
        raise SystemExit(f"results_tables: no analysis records under docs/results/{folder}/")
    by_iteration: Dict[int, List[Dict]] = {}
    for path in paths:
        with open(path) as f:
            record = json.load(f)
        by_iteration.setdefault(record["iteration"], []).append(record)
    models = {}
    for iteration in sorted(by_iteration):
        records = sorted(by_iteration[iteration], key=lambda r: r["seed"])
        seeds = ",".join(str(r["seed"]) for r in records)
        models[f"{iteration} iterations (seeds {seeds})"] = [r["analysis"] for r in records]
    commits = {
        (r.get("commit") or "?")[:10] + ("+" if r.get("dirty") else "") for rs in by_iteration.values() for r in rs
    }
    return (
        analysis_tables(models)
        + f"\nRecords: `docs/results/{folder}/`; analysed at commit {', '.join(sorted(commits))}.\n"
    )


RENDERERS = {
    "results-table": render,
    "model-table": render_models,
    "benchmark-table": render_benchmarks,
    "analysis-table": render_analysis,
}


def _spec(text: str) -> Dict[str, str]:
    return dict(item.split("=", 1) for item in text.split())


def regenerate(text: str) -> str:
    """``text`` with every declared table rebuilt."""
    return TABLE.sub(lambda m: m.group(1) + RENDERERS[m.group("kind")](_spec(m.group("spec"))) + m.group(5), text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="*", help="Markdown files (default: README.md and docs/**/*.md)")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a table is stale")
    args = parser.parse_args(argv)
    stale = []
    for path in args.files or default_files():
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
