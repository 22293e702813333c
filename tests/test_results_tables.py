"""The results tables of the docs are generated from the committed run records."""

import json

import pytest
import results_tables


def test_the_committed_tables_match_their_records():
    assert results_tables.main(["--check"]) == 0, "run: python tools/results_tables.py"


def _record(seed, ap, commit="abc", train_time_s=600.0, config="configs/Shapes/x.yaml", overrides=()):
    metrics = {"bbox": {c: float("nan") for c in results_tables.COLUMNS}}
    metrics["bbox"]["AP"] = ap
    metrics["bbox"]["AP50"] = None  # a NaN written as null
    machine = {"cpu_cores": 2, "device": "cpu", "gpu": None}
    return {
        "seed": seed,
        "metrics": metrics,
        "commit": commit,
        "dirty": False,
        "train_time_s": train_time_s,
        "machine": machine,
        "config": config,
        "overrides": ["SEED", str(seed), "OUTPUT_DIR", f"/out/seed{seed}", *overrides],
    }


@pytest.fixture
def records(tmp_path, monkeypatch):
    monkeypatch.setattr(results_tables, "RECORDS_ROOT", str(tmp_path))
    configs = {"base": "configs/Shapes/base.yaml", "ours": "configs/Shapes/ours.yaml"}
    for run, aps in {"base": [10.0, 20.0, 30.0], "ours": [30.0, 40.0]}.items():
        for seed, ap in zip((42, 43, 44), aps):
            path = tmp_path / "campaign" / run / f"seed{seed}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            # "ours" overrides a model key and a schedule key: only the model key identifies its cost.
            extra = ("MODEL.X", "1", "SOLVER.MAX_ITER", "3000") if run == "ours" else ()
            path.write_text(json.dumps(_record(seed, ap, config=configs[run], overrides=extra)))
    return tmp_path


def _benchmark(tmp_path, name, base_config, compare_config, compare_opts, times):
    """A benchmark record as tools/benchmark.py --record writes it; ``times``: (baseline, compare)
    inference and training-step seconds."""
    (base_inf, base_train), (inf, train) = times
    models = [
        {"name": "base.yaml", "config": base_config, "opts": [], "inference_s": base_inf, "train_s": base_train},
        {"name": "ours.yaml", "config": compare_config, "opts": compare_opts, "inference_s": inf, "train_s": train},
    ]
    record = {
        "kind": "benchmark",
        "command": "python tools/benchmark.py --config-file base --compare ours",
        "commit": "def",
        "dirty": False,
        "settings": {"device": "cpu", "threads": 2, "image_size": 256, "batch_size": 8, "amp": False},
        "models": models,
        "ratios": {"inference": inf / base_inf, "train": train / base_train, "flops": 1.5, "params": 1.25},
        "machine": {"cpu_cores": 2, "device": "cpu", "gpu": None},
    }
    path = tmp_path / results_tables.BENCHMARKS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))


def test_a_table_holds_mean_and_sample_std_per_run_and_the_ratio_to_the_baseline(records):
    table = results_tables.render({"records": "campaign", "runs": "base,ours", "baseline": "base"})
    rows = table.splitlines()
    assert rows[0].startswith("| bbox | seeds | AP | AP50 |")
    assert rows[0].endswith("| AP / base | inference / base | train step / base | train time / run |")
    assert rows[2].startswith("| **base** | 42,43,44 | 20.00 +- 10.00 | - |")  # hand: mean 20, std 10; no AP50 recorded
    assert rows[2].endswith("| 1.000x | 1.00x | 1.00x | 10.00 min |")
    assert "| base seed 43 | | 20.00 |" in table
    ours = next(r for r in rows if r.startswith("| **ours**"))
    # The ratio pairs the seeds: 35 over base's mean at seeds 42 and 43, (10 + 20) / 2 = 15.
    assert ours.startswith("| **ours** | 42,43 | 35.00 +- 7.07 |") and "| 2.333x |" in ours
    assert ours.endswith("| 2.333x | - | - | 10.00 min |")  # no benchmark record of this pair
    assert "commit abc; 2 CPU cores, cpu." in table


def test_stale_tables_are_found_and_rewritten(records, tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "Intro\n<!-- results-table records=campaign runs=ours seeds=no -->\nold numbers\n<!-- /results-table -->\nEnd\n"
    )
    assert results_tables.main(["--check", str(page)]) == 1
    assert results_tables.main([str(page)]) == 0
    text = page.read_text()
    assert "old numbers" not in text and "| **ours** | 42,43 | 35.00 +- 7.07 |" in text and text.endswith("End\n")
    assert results_tables.main(["--check", str(page)]) == 0


def test_a_table_can_compare_runs_of_two_record_folders_but_not_one_name_in_both(records, tmp_path):
    path = tmp_path / "ablation" / "variant" / "seed42.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(_record(42, 15.0, config="configs/Shapes/base.yaml", overrides=("MODEL.Y", "2"))))
    table = results_tables.render({"records": "campaign,ablation", "runs": "base,variant", "baseline": "base"})
    variant = next(r for r in table.splitlines() if r.startswith("| **variant**"))
    assert variant.startswith("| **variant** | 42 | 15.00 |") and "| 1.500x |" in variant  # 15 over base's 10
    assert "Records: `docs/results/campaign/`, `docs/results/ablation/`;" in table
    (tmp_path / "ablation" / "base").mkdir()
    (tmp_path / "ablation" / "base" / "seed42.json").write_text(json.dumps(_record(42, 1.0)))
    with pytest.raises(SystemExit, match="run base is in both campaign and ablation"):
        results_tables.render({"records": "campaign,ablation", "runs": "base"})


def test_a_table_of_missing_records_is_named(records):
    with pytest.raises(SystemExit, match="no records for \\['gfl'\\]"):
        results_tables.render({"records": "campaign", "runs": "gfl"})


def test_a_run_gets_the_cost_of_the_benchmark_that_timed_its_model_against_the_baselines(records, tmp_path):
    # Another model (no MODEL.X) and the pair the other way round must not be taken.
    _benchmark(
        tmp_path, "a_other", "configs/Shapes/base.yaml", "configs/Shapes/ours.yaml", [], ((1.0, 2.0), (9.0, 9.0))
    )
    _benchmark(
        tmp_path, "b_reversed", "configs/Shapes/ours.yaml", "configs/Shapes/base.yaml", [], ((1.0, 2.0), (9.0, 9.0))
    )
    _benchmark(
        tmp_path, "c_ours", "./configs/Shapes/base.yaml", "configs/Shapes/ours.yaml", ["MODEL.X", "1", "MODEL.WEIGHTS", "w.pth"],
        ((0.020, 0.400), (0.025, 0.300)),
    )  # fmt: skip
    table = results_tables.render({"records": "campaign", "runs": "base,ours", "baseline": "base", "seeds": "no"})
    ours = next(r for r in table.splitlines() if r.startswith("| **ours**"))
    assert ours.endswith("| 2.333x | 1.25x | 0.75x | 10.00 min |")  # 25 / 20 ms, 300 / 400 ms


def test_the_model_table_has_a_row_per_model_with_its_baseline_ratios(records, tmp_path):
    _benchmark(
        tmp_path,
        "ours",
        "configs/Shapes/base.yaml",
        "configs/Shapes/ours.yaml",
        ["MODEL.X", "1"],
        ((0.02, 0.4), (0.03, 0.2)),
    )
    table = results_tables.render_models({"rows": "campaign/ours/bbox/base"}).splitlines()
    assert (
        table[0]
        == "| model | config | task | AP (mean +- std) | seeds | baseline | AP ratio | inference | train step |"
    )
    assert table[2] == (
        "| ours | [`ours.yaml`](configs/Shapes/ours.yaml) | bbox | 35.00 +- 7.07 | 42,43 | base | 2.33x | 1.50x | 0.50x |"
    )


def test_the_benchmark_table_lists_every_record_with_its_command(records, tmp_path):
    _benchmark(tmp_path, "ours", "configs/Shapes/base.yaml", "configs/Shapes/ours.yaml", [], ((0.02, 0.4), (0.03, 0.2)))
    table = results_tables.render_benchmarks({"records": results_tables.BENCHMARKS})
    assert (
        "| base.yaml | ours.yaml [1] | initial | 2-core CPU, 2 threads | 256 px | 8 | 20.0 / 30.0 | 1.50x | 400.0 / 200.0 | 0.50x | 1.50x | 1.25x |"
        in table
    )
    assert "1. `" in table and "(commit def): `python tools/benchmark.py --config-file base --compare ours`" in table


def test_a_model_is_its_config_and_model_overrides_the_last_override_winning():
    opts = ["MODEL.A", "1", "SOLVER.MAX_ITER", "2", "MODEL.A", "3", "MODEL.WEIGHTS", "w.pth", "MODEL.B", "x"]
    assert results_tables.model_key("./configs/a.yaml", opts) == (
        "configs/a.yaml",
        (("MODEL.A", "3"), ("MODEL.B", "x")),
    )


def test_a_run_without_a_seed_in_common_with_its_baseline_gets_no_ratio_and_one_seed_no_std(records, tmp_path):
    path = tmp_path / "campaign" / "lone" / "seed7.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(_record(7, 50.0, config="configs/Shapes/lone.yaml")))
    row = results_tables.render_models({"rows": "campaign/lone/bbox/base"}).splitlines()[2]
    assert row == "| lone | [`lone.yaml`](configs/Shapes/lone.yaml) | bbox | 50.00 | 7 | base | - | - | - |"


def _analysis_record(tmp_path, seed, iteration, ap_by_alpha, ap75_by_alpha, pearson, upper=None, ap50_ap90=None):
    analysis = {
        "alpha_sweep": {a: {"AP": ap, "AP75": ap75_by_alpha[a]} for a, ap in ap_by_alpha.items()},
        "localization": pearson,
    }
    for alpha, (ap50, ap90) in (ap50_ap90 or {}).items():
        analysis["alpha_sweep"][alpha].update(AP50=ap50, AP90=ap90)
    if upper is not None:
        analysis["upper_bound"] = {"AP": upper}
    record = {"seed": seed, "iteration": iteration, "checkpoint": "x.pth", "commit": "abc", "dirty": False}
    path = tmp_path / "analysis" / f"seed{seed}_model_{iteration:07d}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**record, "analysis": analysis}))


def test_the_analysis_table_gives_the_ranking_gain_and_the_correlations_per_iteration_by_hand(records, tmp_path):
    _analysis_record(
        tmp_path, 1, 1000, {"0.5": 30.0, "1.0": 29.0, "0.3": 31.0}, {"0.5": 34.0, "1.0": 33.0, "0.3": 35.0},
        {"pearson_pred_ious": 0.1, "pearson_pred_ious_any_class_overlapping": 0.5, "mean_pred_ious_unmatched": 0.8},
        upper=36.0, ap50_ap90={"0.5": (50.0, 10.0), "1.0": (51.0, 8.0)},
    )  # fmt: skip
    _analysis_record(
        tmp_path, 2, 1000, {"0.5": 26.0, "1.0": 26.0, "0.3": 25.0}, {"0.5": 30.0, "1.0": 31.0, "0.3": 29.0},
        {"pearson_pred_ious": 0.3, "pearson_pred_ious_any_class_overlapping": 0.7, "mean_pred_ious_unmatched": 0.6},
        upper=32.0, ap50_ap90={"0.5": (48.0, 9.0), "1.0": (50.0, 8.0)},
    )  # fmt: skip
    _analysis_record(
        tmp_path, 1, 3000, {"0.5": 40.0, "1.0": 38.0}, {"0.5": 44.0, "1.0": 41.0}, {"pearson_scores": None}
    )
    text = results_tables.render_analysis({"records": "analysis"})
    rows = [line for line in text.splitlines() if line.startswith("| 1000 iterations")]
    # AP at alpha 1: 29, 26 -> 27.50 +- 2.12 (sqrt(4.5)); alpha 0.5: 30, 26 -> 28.00 +- 2.83 (sqrt(8));
    # gain 1, 0 -> 0.50 +- 0.71; AP75 33, 31 -> 32.00 +- 1.41 and 34, 30 -> 32.00 +- 2.83; AP50 gain -1, -2 ->
    # -1.50 +- 0.71; AP90 gain 2, 1 -> 1.50 +- 0.71; best alphas 0.3, 0.5 (the first of the ties 0.5 / 1.0 in the
    # report's order); upper bound 36, 32 -> 34.00 +- 2.83.
    assert rows[0] == (
        "| 1000 iterations (seeds 1,2) | 2 | 27.50 +- 2.12 | 28.00 +- 2.83 | 0.50 +- 0.71 | 32.00 +- 1.41 "
        "| 32.00 +- 2.83 | -1.50 +- 0.71 | 1.50 +- 0.71 | 0.3, 0.5 | 34.00 +- 2.83 |"
    )
    # Predicted IoU: same class, all 0.1, 0.3 -> 0.20 +- 0.14; any class, IoU > 0 0.5, 0.7 -> 0.60 +- 0.14;
    # mean on the unmatched 0.8, 0.6 -> 0.70 +- 0.14. No record holds the other columns: they are left out.
    assert "| model | confidence | r, same class, all | r, any class, IoU > 0 | mean, IoU < 0.5 |" in text
    assert rows[1] == "| 1000 iterations (seeds 1,2) | predicted IoU | 0.20 +- 0.14 | 0.60 +- 0.14 | 0.70 +- 0.14 |"
    assert "| 3000 iterations (seeds 1) | 1 | 38.00 | 40.00 | 2.00 | 41.00 | 44.00 | - | - | 0.5 | - |" in text
    assert "| 3000 iterations (seeds 1) | S | - | - | - |" in text  # a NaN correlation recorded as null


def test_an_analysis_without_the_two_alphas_is_named(records, tmp_path):
    _analysis_record(tmp_path, 1, 1000, {"0.5": 30.0}, {"0.5": 34.0}, {})
    with pytest.raises(SystemExit, match="lacks alpha 0.5 or 1.0"):
        results_tables.render_analysis({"records": "analysis"})
