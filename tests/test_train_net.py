"""train_net.py trains and evaluates a Shapes config end to end, and --eval-only reproduces it."""

import json
import math
import sys

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.engine import default_argument_parser

import train_net

SHAPES_CONFIGS = [
    "retinanet_slim_R_FPN.yaml",
    "iou_aware_retinanet_slim_R_FPN.yaml",
    "faster_rcnn_slim_R_FPN_focal_iou.yaml",
    "gfl_slim_R_FPN.yaml",
    "gflv2_slim_R_FPN.yaml",
    "lsnet_slim_R_FPN.yaml",
    "lsnet_contour_slim_R_FPN.yaml",
]
# Configs under configs/Stickmen/ (trained on the tiny stickmen datasets).
STICKMEN_CONFIGS = ["lsnet_keypoint_slim_R_FPN.yaml"]


def _config_path(repo_root, config):
    family = "Stickmen" if config in STICKMEN_CONFIGS else "Shapes"
    return f"{repo_root}/configs/{family}/{config}"


def _args(repo_root, config, output_dir, *extra):
    data = "stickmen" if config in STICKMEN_CONFIGS else "shapes"
    return default_argument_parser().parse_args(
        [
            "--config-file",
            _config_path(repo_root, config),
            *extra,
            "DATASETS.TRAIN",
            f"('{data}_tiny_train',)",
            "DATASETS.TEST",
            f"('{data}_tiny_val',)",
            "INPUT.MIN_SIZE_TRAIN",
            "(128,)",
            "INPUT.MAX_SIZE_TRAIN",
            "128",
            "INPUT.MIN_SIZE_TEST",
            "128",
            "INPUT.MAX_SIZE_TEST",
            "128",
            "SOLVER.IMS_PER_BATCH",
            "2",
            "SOLVER.MAX_ITER",
            "6",
            "SOLVER.WARMUP_ITERS",
            "2",
            "SOLVER.STEPS",
            "(4,)",
            "DATALOADER.NUM_WORKERS",
            "0",
            # So that an untrained model still outputs boxes and AP is a number, not NaN.
            "MODEL.RETINANET.SCORE_THRESH_TEST",
            "0.0",
            "MODEL.ROI_HEADS.SCORE_THRESH_TEST",
            "0.0",
            "MODEL.GFL.SCORE_THRESH_TEST",
            "0.0",
            "MODEL.LSNET.SCORE_THRESH_TEST",
            "0.0",
            "SEED",
            "0",
            "OUTPUT_DIR",
            str(output_dir),
        ]
    )


@pytest.fixture(scope="module", params=SHAPES_CONFIGS + STICKMEN_CONFIGS)
def trained(request, repo_root, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("train")
    results = train_net.main(_args(repo_root, request.param, output_dir))
    return request.param, output_dir, results


def test_training_then_evaluation_reports_coco_ap(trained):
    config, output_dir, results = trained
    assert set(results["bbox"]) >= {"AP", "AP50", "AP75", "APs", "APm", "APl", "AP60", "AP70", "AP80", "AP90"}
    for key in ("AP", "AP50", "AP75"):  # the tiny val set may hold no object of some size range
        assert math.isfinite(results["bbox"][key]), key
    # Masks and keypoints are evaluated by COCOEvaluator's segm and keypoints tasks.
    expected_tasks = {"bbox"}
    if config == "lsnet_contour_slim_R_FPN.yaml":
        expected_tasks.add("segm")
    if config in STICKMEN_CONFIGS:
        expected_tasks.add("keypoints")
    assert set(results) == expected_tasks
    for task in expected_tasks:
        assert math.isfinite(results[task]["AP"]), task
    assert (output_dir / "model_final.pth").is_file()
    data = "stickmen" if config in STICKMEN_CONFIGS else "shapes"
    assert (output_dir / "inference" / f"{data}_tiny_val" / "coco_instances_results.json").is_file()


def test_a_run_record_holds_the_run_and_its_results(trained, repo_root):
    import json
    import subprocess

    config, output_dir, results = trained
    record = json.loads((output_dir / "run_record.json").read_text())
    assert record["config"].endswith(config) and record["seed"] == 0 and record["iterations"] == 6
    assert record["ims_per_batch"] == 2 and "SOLVER.MAX_ITER" in record["overrides"] and not record["eval_only"]
    for task, values in results.items():  # NaN (no object of a size) is written as null
        assert record["metrics"][task] == {
            k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in values.items()
        }
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo_root, capture_output=True, text=True).stdout.strip()
    assert record["commit"] == head and isinstance(record["dirty"], bool)
    assert record["train_time_s"] > 0 and record["machine"]["device"] == "cpu" and record["machine"]["cpu_cores"] >= 1


def test_eval_only_with_the_checkpoint_reproduces_the_final_evaluation(trained, repo_root, tmp_path):
    config, output_dir, results = trained
    args = _args(repo_root, config, tmp_path, "--eval-only")
    args.opts += ["MODEL.WEIGHTS", str(output_dir / "model_final.pth")]
    eval_results = train_net.main(args)
    for task in results:
        assert eval_results[task] == pytest.approx(results[task], abs=1e-9, nan_ok=True)
    # The evaluation has its own record; it names the weights and trains nothing.
    import json

    record = json.loads((tmp_path / "eval_record.json").read_text())
    assert record["eval_only"] and record["weights"] == str(output_dir / "model_final.pth")
    assert record["iterations"] is None and record["train_time_s"] is None
    assert not (tmp_path / "run_record.json").exists()


@pytest.mark.parametrize("trained", ["iou_aware_retinanet_slim_R_FPN.yaml"], indirect=True)
def test_analysis_tool_on_the_trained_iou_aware_model(trained, repo_root, tmp_path):
    """The alpha sweep and the upper bound need an IoU-aware model."""
    config, output_dir, results = trained
    import analyze

    report = analyze.main(
        [
            "--config-file", f"{repo_root}/configs/Shapes/{config}",
            "--dataset", "shapes_tiny_val",
            "--output", str(tmp_path),
            "--alpha-sweep", "0.5,1.0",
            "--upper-bound",
            "--score-thresholds", "0.0,0.5",
            "MODEL.WEIGHTS", str(output_dir / "model_final.pth"),
            "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "128",
            "MODEL.RETINANET.SCORE_THRESH_TEST", "0.0",
        ]
    )  # fmt: skip
    assert report["bbox"]["AP"] == pytest.approx(results["bbox"]["AP"], nan_ok=True)
    # alpha 0.5 is the model's own setting: the sweep reproduces the plain evaluation.
    assert report["alpha_sweep"]["0.5"]["AP"] == pytest.approx(results["bbox"]["AP"], nan_ok=True)
    assert {"pearson_scores", "pearson_cls_scores", "pearson_pred_ious"} <= set(report["localization"])
    assert "AP" in report["upper_bound"]
    # Threshold 0 keeps every detection: the localization evaluator's count over the images.
    images = len(DatasetCatalog.get("shapes_tiny_val"))
    everything = report["score_thresholds"]["0"]
    assert everything["detections_per_image"] == pytest.approx(report["localization"]["num_detections"] / images)
    assert report["score_thresholds"]["0.5"]["detections_per_image"] <= everything["detections_per_image"]
    for name in ("confidence_vs_iou.png", "ap_vs_iou_threshold.png", "results.json"):
        assert (tmp_path / name).is_file()


@pytest.mark.parametrize("trained", ["gfl_slim_R_FPN.yaml", "lsnet_slim_R_FPN.yaml"], indirect=True)
def test_analysis_tool_on_other_trained_models(trained, repo_root, tmp_path):
    """The score-vs-IoU scatter and AP-vs-threshold curve for any dense model of the package."""
    config, output_dir, results = trained
    import analyze

    report = analyze.main(
        [
            "--config-file", _config_path(repo_root, config),
            "--dataset", "shapes_tiny_val",
            "--output", str(tmp_path),
            "MODEL.WEIGHTS", str(output_dir / "model_final.pth"),
            "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "128",
            "MODEL.GFL.SCORE_THRESH_TEST", "0.0", "MODEL.LSNET.SCORE_THRESH_TEST", "0.0",
        ]
    )  # fmt: skip
    assert report["bbox"]["AP"] == pytest.approx(results["bbox"]["AP"], nan_ok=True)
    assert "pearson_scores" in report["localization"]
    for name in ("confidence_vs_iou.png", "ap_vs_iou_threshold.png", "results.json"):
        assert (tmp_path / name).is_file()


def test_benchmark_tool_compares_two_configs(repo_root, tmp_path):
    import benchmark

    stats = benchmark.main(
        [
            "--config-file", f"{repo_root}/configs/Shapes/retinanet_slim_R_FPN.yaml",
            "--compare", f"{repo_root}/configs/Shapes/iou_aware_retinanet_slim_R_FPN.yaml",
            "--image-size", "128", "--batch-size", "2", "--warmup", "1", "--repeats", "2",
            "--output", str(tmp_path / "bench.md"), "--record", str(tmp_path / "bench.json"),
        ]
    )  # fmt: skip
    assert len(stats) == 2 and all(s["inference"] > 0 and s["train"] > 0 and s["flops"] > 0 for s in stats)
    assert stats[1]["params"] > stats[0]["params"]  # the IoU conv
    assert "ratio (compare / baseline)" in (tmp_path / "bench.md").read_text()

    record = json.loads((tmp_path / "bench.json").read_text())
    baseline, compare = record["models"]
    assert compare["config"].endswith("configs/Shapes/iou_aware_retinanet_slim_R_FPN.yaml")
    assert record["settings"]["batch_size"] == 2 and record["settings"]["repeats"] == 2
    assert record["machine"]["device"] == "cpu" and record["commit"]
    # The IoU-aware head adds one 3x3 conv (tower channels -> one IoU per anchor, with bias).
    cfg = benchmark.load_config(f"{repo_root}/configs/Shapes/iou_aware_retinanet_slim_R_FPN.yaml", [], "cpu")
    anchors = len(cfg.MODEL.ANCHOR_GENERATOR.SIZES[0]) * len(cfg.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS[0])
    assert compare["params"] - baseline["params"] == cfg.MODEL.FPN.OUT_CHANNELS * 9 * anchors + anchors
    assert record["ratios"]["inference"] == pytest.approx(compare["inference_s"] / baseline["inference_s"])
    assert record["ratios"]["train"] == pytest.approx(compare["train_s"] / baseline["train_s"])
    assert record["ratios"]["params"] == pytest.approx(compare["params"] / baseline["params"])
    assert record["command"].startswith("python tools/benchmark.py --config-file")


def test_benchmark_tool_reports_the_share_of_named_modules(repo_root, tmp_path):
    """LSNet against RetinaNet with the deformable convs' share of LSNet's inference time."""
    import benchmark

    stats = benchmark.main(
        [
            "--config-file", f"{repo_root}/configs/Shapes/retinanet_slim_R_FPN.yaml",
            "--compare", f"{repo_root}/configs/Shapes/lsnet_slim_R_FPN.yaml",
            "--image-size", "128", "--batch-size", "2", "--warmup", "1", "--repeats", "2",
            "--tasks", "inference,train", "--module-share", "PyramidDeformConv", "--profile-ops", "5",
            "--output", str(tmp_path / "bench.md"),
        ]
    )  # fmt: skip
    assert "module_share" not in stats[0]  # RetinaNet has no such module
    share = stats[1]["module_share"]["PyramidDeformConv"]
    assert 0 < share < 1
    report = (tmp_path / "bench.md").read_text()
    assert "Share of lsnet_slim_R_FPN.yaml's inference time in PyramidDeformConv" in report
    # The op profile of each model's training step: 5 ops each, LSNet's with the deformable gather.
    lsnet_ops = report.split("Most expensive ops of one lsnet_slim_R_FPN.yaml training step")[1]
    rows = [
        line for line in lsnet_ops.split("Most expensive ops of one retinanet")[0].splitlines() if line.startswith("| ")
    ]
    assert len(rows) == 1 + 5  # header + 5 ops (aten ops or the fused deformable conv's)
    assert "Most expensive ops of one retinanet_slim_R_FPN.yaml training step" in report


def test_benchmark_tool_compares_one_config_under_two_settings(repo_root, tmp_path, monkeypatch):
    import benchmark

    built = []
    original = benchmark.Runner.__init__

    def record(self, name, cfg, *args):
        built.append((name, cfg.MODEL.LSNET.DEFORM_CONV_IMPL, cfg.MODEL.LSNET.NUM_CONVS))
        original(self, name, cfg, *args)

    monkeypatch.setattr(benchmark.Runner, "__init__", record)
    stats = benchmark.main(
        [
            "--config-file", f"{repo_root}/configs/Shapes/lsnet_slim_R_FPN.yaml",
            "--compare-opts", "MODEL.LSNET.DEFORM_CONV_IMPL grid_sample",
            "--image-size", "64", "--warmup", "0", "--repeats", "1", "--tasks", "inference",
            "--output", str(tmp_path / "bench.md"), "MODEL.LSNET.NUM_CONVS", "1",
        ]
    )  # fmt: skip
    assert len(stats) == 2
    assert built == [
        ("lsnet_slim_R_FPN.yaml", "auto", 1),  # the trailing opts apply to both models
        ("lsnet_slim_R_FPN.yaml (MODEL.LSNET.DEFORM_CONV_IMPL grid_sample)", "grid_sample", 1),
    ]
    report = (tmp_path / "bench.md").read_text()
    assert "| lsnet_slim_R_FPN.yaml (MODEL.LSNET.DEFORM_CONV_IMPL grid_sample) |" in report
    assert "--compare-opts 'MODEL.LSNET.DEFORM_CONV_IMPL grid_sample'" in report  # a command that reruns as written


def test_benchmark_tool_runs_models_under_amp(repo_root, tmp_path):
    """--amp: the forward of inference and of the training step under autocast (bf16 on CPU)."""
    import benchmark

    cfg = benchmark.load_config(
        f"{repo_root}/configs/Shapes/lsnet_slim_R_FPN.yaml", ["MODEL.LSNET.NUM_CONVS", "1"], "cpu"
    )
    runner = benchmark.Runner("lsnet", cfg, "", benchmark.make_inputs(2, 64, 2), "cpu", amp=True)
    seen = []
    runner.model.backbone.register_forward_hook(lambda *_: seen.append(torch.is_autocast_enabled("cpu")))
    runner.inference(record=True)
    runner.train_step(record=True)
    assert seen == [True, True] and len(runner.times["inference"]) == len(runner.times["train"]) == 1
    benchmark.main(
        [
            "--config-file", f"{repo_root}/configs/Shapes/lsnet_slim_R_FPN.yaml", "--amp", "--image-size", "64",
            "--warmup", "0", "--repeats", "1", "--tasks", "inference,train", "--output", str(tmp_path / "amp.md"),
            "MODEL.LSNET.NUM_CONVS", "1",
        ]
    )  # fmt: skip
    assert (tmp_path / "amp.md").read_text().startswith("Device: CPU, 2 threads, AMP;")


def test_deform_conv_benchmark_times_every_implementation_against_a_plain_conv(tmp_path):
    import benchmark_deform_conv

    from iou_aware.layers.deformable import fused_kernel_available

    output = tmp_path / "deform.md"
    benchmark_deform_conv.main(
        ["--channels", "8", "--size", "10", "--warmup", "1", "--repeats", "2", "--output", str(output)]
    )
    rows = {line.split("|")[1].strip(): line for line in output.read_text().splitlines() if line.startswith("| ")}
    expected = {"implementation", "plain conv (F.conv2d)", "grid_sample", "torchvision"}
    assert set(rows) == expected | ({"fused"} if fused_kernel_available() else set())
    assert rows["plain conv (F.conv2d)"].rstrip().endswith("| 1.00x |")
    for name in ("grid_sample", "torchvision"):
        assert float(rows[name].split("|")[4].strip().rstrip("x")) > 0


@pytest.mark.parametrize("trained", ["iou_aware_retinanet_slim_R_FPN.yaml"], indirect=True)  # one is enough
def test_demo_draws_predictions_and_reports_a_corrupt_image_by_name(trained, repo_root, tmp_path):
    config, output_dir, _ = trained
    import shutil

    from detectron2.data import MetadataCatalog

    sys.path.insert(0, f"{repo_root}/demo")
    import demo

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    image_root = MetadataCatalog.get("shapes_tiny_val").image_root
    for name in ("000000.png", "000001.png"):
        shutil.copy(f"{image_root}/{name}", inputs / name)
    (inputs / "corrupt.png").write_bytes(b"this is not a png")
    out = tmp_path / "out"
    args = [
        "--config-file", _config_path(repo_root, config),
        "--input", str(inputs), "--output", str(out), "--confidence-threshold", "0.0",
        "--opts", "MODEL.WEIGHTS", str(output_dir / "model_final.pth"),
        "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "128",
    ]  # fmt: skip
    assert demo.main(args) == 1  # one input failed, the others were drawn
    for name in ("000000.png", "000001.png"):
        drawn = (out / name).read_bytes()
        assert drawn and drawn != (inputs / name).read_bytes()
    cfg = demo.setup_cfg(demo.get_parser().parse_args(args))
    failures = demo.run_on_images(
        demo.metadata_of(cfg), demo.DefaultPredictor(cfg), [str(inputs / "corrupt.png")], str(out)
    )
    assert len(failures) == 1 and "Cannot read image" in failures[0] and "corrupt.png" in failures[0]

    missing = args[:-6] + ["MODEL.WEIGHTS", str(tmp_path / "nope.pth")]
    with pytest.raises(SystemExit, match="MODEL.WEIGHTS file not found: .*nope.pth"):
        demo.main(missing)
    # Names for another class count than the model's would label every box wrongly.
    with pytest.raises(
        SystemExit, match="MODEL.RETINANET.NUM_CLASSES = 2 classes, but the test dataset 'shapes_val' names 4"
    ):
        demo.main(args + ["MODEL.RETINANET.NUM_CLASSES", "2"])
    with pytest.raises(SystemExit, match="--register-coco after --opts .* put it before --opts"):
        demo.main(args + ["--register-coco", "x", "x.json", "images"])


@pytest.mark.parametrize("trained", ["lsnet_contour_slim_R_FPN.yaml", "lsnet_keypoint_slim_R_FPN.yaml"], indirect=True)
def test_visualizer_draws_lsnet_masks_and_keypoints(trained, repo_root, tmp_path):
    """Detectron2's Visualizer draws the masks (contour task) and keypoints (pose) of a just-trained
    tiny LSNet to PNG files that differ from the inputs."""
    config, output_dir, _ = trained
    import cv2
    from detectron2.data import MetadataCatalog
    from detectron2.engine import DefaultPredictor
    from detectron2.utils.visualizer import Visualizer

    cfg = train_net.setup(_args(repo_root, config, tmp_path, "--eval-only"))
    cfg.defrost()
    cfg.MODEL.WEIGHTS = str(output_dir / "model_final.pth")
    cfg.freeze()
    predictor = DefaultPredictor(cfg)
    metadata = MetadataCatalog.get(cfg.DATASETS.TEST[0])
    field = "pred_masks" if "contour" in config else "pred_keypoints"
    for name in ("000000.png", "000001.png"):
        image = cv2.imread(f"{metadata.image_root}/{name}")
        instances = predictor(image)["instances"].to("cpu")
        assert len(instances) > 0 and instances.has(field)
        drawn = Visualizer(image[:, :, ::-1], metadata).draw_instance_predictions(instances[:5]).get_image()
        path = tmp_path / name
        cv2.imwrite(str(path), drawn[:, :, ::-1])
        assert path.is_file() and not np.array_equal(cv2.imread(str(path)), image)
