"""``train_net.py --num-gpus 2`` on a machine without GPUs: two CPU processes on gloo train with the
same loss curve as one process with the whole batch, and evaluation gathers every process."""

import json
import os
import subprocess
import sys

import pytest
import torch

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="tests the CPU (gloo) path")


def _run(repo_root, output_dir, num_processes, ims_per_batch_total):
    helper = os.path.join(repo_root, "tests", "helpers", "train_and_record_losses.py")
    command = [
        sys.executable, helper,
        "--config-file", f"{repo_root}/configs/Shapes/lsnet_slim_R_FPN.yaml",
        "--num-gpus", str(num_processes), "--dist-url", "auto",
        "DATASETS.TRAIN", "('shapes_tiny_train',)",
        "DATASETS.TEST", "('shapes_tiny_val',)",
        "INPUT.MIN_SIZE_TRAIN", "(96,)", "INPUT.MAX_SIZE_TRAIN", "96",
        "INPUT.MIN_SIZE_TEST", "96", "INPUT.MAX_SIZE_TEST", "96",
        "INPUT.RANDOM_FLIP", "none",  # each process draws its own flips
        # No batch statistics: 2 x 2 images must equal 1 x 4 (BatchNorm would see 2 vs 4 images).
        "MODEL.RESNETS.NORM", "FrozenBN",
        "MODEL.LSNET.SCORE_THRESH_TEST", "0.0",
        "SOLVER.IMS_PER_BATCH", str(ims_per_batch_total),
        "SOLVER.MAX_ITER", "5",
        "SOLVER.WARMUP_ITERS", "1",
        "SOLVER.STEPS", "(4,)",
        "DATALOADER.NUM_WORKERS", "0",
        "SEED", "3",
        "OUTPUT_DIR", str(output_dir),
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1")
    process = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert process.returncode == 0, process.stderr[-3000:]
    return json.loads((output_dir / "losses.json").read_text()), process.stderr + process.stdout


def test_two_cpu_processes_match_one_process_with_the_whole_batch(repo_root, tmp_path):
    """LSNet: its loss normalizers are sums of per-image counts averaged over the workers, so 2 x 2
    images and 1 x 4 give the same losses. (GFL clamps its weight sum to >= 1 after averaging,
    as the reference does, which makes them differ while that sum is below 1; RetinaNet's moving
    normalizer is per worker in Detectron2.)"""
    two, log = _run(repo_root, tmp_path / "two", 2, 4)
    one, _ = _run(repo_root, tmp_path / "one", 1, 4)
    assert len(two) == len(one) == 5
    # Stated tolerance: 1e-4 relative (the two runs sum the same numbers in another order).
    assert two == pytest.approx(one, rel=1e-4)
    # Evaluation ran on both processes' share of the images and was gathered on the main one.
    assert "Evaluation results for shapes_tiny_val" in log
    # Score threshold 0: every image has detections, so every image id must be in the gathered file.
    from detectron2.data import DatasetCatalog

    results = json.loads(
        (tmp_path / "two" / "inference" / "shapes_tiny_val" / "coco_instances_results.json").read_text()
    )
    expected_ids = {record["image_id"] for record in DatasetCatalog.get("shapes_tiny_val")}
    assert {r["image_id"] for r in results} == expected_ids
