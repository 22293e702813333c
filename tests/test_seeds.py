"""tools/experiments/seeds.py: trains each model per seed, tabulates mean +- std, resumes."""

import math
import os

import pytest

TINY = [
    "DATASETS.TRAIN", "('shapes_tiny_train',)", "DATASETS.TEST", "('shapes_tiny_val',)",
    "INPUT.MIN_SIZE_TRAIN", "(128,)", "INPUT.MAX_SIZE_TRAIN", "128", "INPUT.MIN_SIZE_TEST", "128",
    "INPUT.MAX_SIZE_TEST", "128", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "2", "SOLVER.WARMUP_ITERS", "1",
    "SOLVER.STEPS", "(1,)", "DATALOADER.NUM_WORKERS", "0", "MODEL.RETINANET.SCORE_THRESH_TEST", "0.0",
]  # fmt: skip


def _seeds_tool(repo_root):
    import seeds

    return seeds


def test_mean_and_sample_std():
    seeds = _seeds_tool(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    mean, std = seeds.mean_std([1.0, 2.0, 6.0])
    assert mean == pytest.approx(3.0) and std == pytest.approx(math.sqrt(7.0))  # ((4 + 1 + 9) / 2) ** 0.5
    assert seeds.mean_std([5.0]) == (5.0, 0.0)
    assert seeds.mean_std([2.0, float("nan"), 4.0]) == pytest.approx((3.0, math.sqrt(2.0)))


def test_two_seeds_of_a_two_iteration_run_make_a_table_and_a_plot_and_resume(repo_root, tmp_path, monkeypatch):
    seeds = _seeds_tool(repo_root)
    helper = os.path.join(repo_root, "tests", "helpers", "train_and_record_losses.py")  # registers the tiny sets
    argv = ["--output", str(tmp_path), "--seeds", "1", "2", "--train-script", helper,
            "--run", "retinanet", f"{repo_root}/configs/Shapes/retinanet_slim_R_FPN.yaml", "SOLVER.BASE_LR", "0.001",
            "--records", str(tmp_path / "records"), "--opts", *TINY]  # fmt: skip
    records = seeds.main(argv)
    runs = records["retinanet"]
    assert [r["seed"] for r in runs] == [1, 2] and all(r["wall_time_s"] > 0 for r in runs)
    for seed in (1, 2):
        final = tmp_path / "retinanet" / f"seed{seed}" / "final_metrics.json"
        assert final.is_file()
        assert (tmp_path / "retinanet" / f"seed{seed}" / "config.yaml").read_text().count("BASE_LR: 0.001") == 1
    for seed, run in zip((1, 2), runs):  # each run's record, collected for the generated tables
        import json

        collected = json.loads((tmp_path / "records" / "retinanet" / f"seed{seed}.json").read_text())
        assert collected["seed"] == seed and collected["metrics"]["bbox"]["AP"] == pytest.approx(
            run["bbox"]["AP"], nan_ok=True
        )
    aps = [r["bbox"]["AP"] for r in runs]
    mean, std = seeds.mean_std(aps)
    text = (tmp_path / "results.md").read_text()
    assert f"{mean:.2f} +- {std:.2f}" in text and "retinanet seed 1" in text and "retinanet seed 2" in text
    assert (tmp_path / "ap_per_seed_bbox.png").stat().st_size > 1000

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    commit = seeds.current_commit()  # asked of git before subprocess.run is replaced
    monkeypatch.setattr(seeds, "current_commit", lambda: commit)
    monkeypatch.setattr(seeds.subprocess, "run", no_training)
    assert seeds.main(argv)["retinanet"] == runs

    # A finished run is reused only for the same setting and the same code.
    other_lr = [a if a != "0.001" else "0.002" for a in argv]
    with pytest.raises(SystemExit, match="retinanet/seed1 holds a finished run of config .* remove the folder"):
        seeds.main(other_lr)
    monkeypatch.setattr(seeds, "current_commit", lambda: "0123456789abcdef")
    with pytest.raises(SystemExit, match="trained at commit .*, the checkout is at 0123456789: remove the folder"):
        seeds.main(argv)
    assert seeds.main(["--reuse-other-commits", *argv])["retinanet"] == runs


def test_report_only_tabulates_the_finished_runs_and_trains_nothing(repo_root, tmp_path, monkeypatch):
    """A sweep still running: seed 1 of model a finished, the rest not; --report-only lists just that."""
    import json

    seeds = _seeds_tool(repo_root)
    finished = tmp_path / "a" / "seed1"
    finished.mkdir(parents=True)
    bbox = {c: 10.0 + i for i, c in enumerate(seeds.COLUMNS)}
    (finished / "final_metrics.json").write_text(
        json.dumps({"config": "x.yaml", "seed": 1, "opts": [], "wall_time_s": 60.0, "bbox": bbox})
    )
    (tmp_path / "b" / "seed1").mkdir(parents=True)  # a run in progress: no final metrics

    def no_training(*args, **kwargs):
        raise AssertionError("--report-only trained a run")

    monkeypatch.setattr(seeds.subprocess, "run", no_training)
    config = f"{repo_root}/configs/Shapes/retinanet_slim_R_FPN.yaml"
    records = seeds.main(
        ["--output", str(tmp_path), "--seeds", "1", "2", "--report-only", "--run", "a", config, "--run", "b", config]
    )
    assert list(records) == ["a"] and [r["seed"] for r in records["a"]] == [1]
    text = (tmp_path / "results.md").read_text()
    assert "| **a** | 1 | 10.00 +- 0.00 | 11.00 +- 0.00 |" in text and "| **b**" not in text
    with pytest.raises(SystemExit, match="no finished run"):
        seeds.main(["--output", str(tmp_path / "empty"), "--seeds", "1", "--report-only", "--run", "a", config])


def test_the_campaign_names_existing_configs_and_refuses_an_unknown_group(repo_root):
    import re
    import subprocess

    script = os.path.join(repo_root, "tools", "experiments", "campaign.sh")
    text = open(script).read()
    configs = set(re.findall(r"\$SHAPES/([\w.]+\.yaml)", text))
    assert configs and all(os.path.isfile(os.path.join(repo_root, "configs", "Shapes", c)) for c in configs)
    assert all(os.path.isfile(os.path.join(repo_root, c)) for c in re.findall(r"configs/Stickmen/[\w.]+\.yaml", text))
    result = subprocess.run(
        ["bash", script], env={**os.environ, "CAMPAIGN_GROUPS": "nonsense"}, capture_output=True, text=True
    )
    assert result.returncode == 2 and "unknown group nonsense" in result.stderr


def test_checkpoints_of_each_seed_are_analysed_into_records(repo_root, tmp_path):
    """A 2-iteration IoU-aware run with a checkpoint after each iteration, analysed at both."""
    import json

    seeds = _seeds_tool(repo_root)
    helper = os.path.join(repo_root, "tests", "helpers", "train_and_record_losses.py")
    config = f"{repo_root}/configs/Shapes/iou_aware_retinanet_slim_R_FPN.yaml"
    seeds.main(["--output", str(tmp_path / "runs"), "--seeds", "3", "--train-script", helper,
                "--run", "iou_aware", config, "SOLVER.CHECKPOINT_PERIOD", "1", "--opts", *TINY])  # fmt: skip
    import checkpoint_analysis as tool

    argv = ["--run-dir", str(tmp_path / "runs" / "iou_aware"), "--records", str(tmp_path / "records"),
            "--checkpoints", "model_0000000.pth", "model_final.pth", "--alpha-sweep", "0.5,1"]  # fmt: skip
    records = tool.main(argv)
    assert [(r["seed"], r["iteration"]) for r in records] == [(3, 1), (3, 2)]
    for record in records:
        assert (
            set(record["analysis"]["alpha_sweep"]) == {"0.5", "1.0"}
            and "pearson_pred_ious" in record["analysis"]["localization"]
        )
    written = json.loads((tmp_path / "records" / "seed3_model_final.json").read_text())
    assert written["checkpoint"] == "model_final.pth" and written["commit"] == records[1]["commit"]
    assert tool.main(argv) == records  # resumed from the records, nothing analysed again
