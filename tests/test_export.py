"""tools/export.py traces each meta-architecture of the package to TorchScript and to ONNX (run by
ONNX Runtime) and checks both against the eager model on two image sizes."""
import importlib.util
import os

import pytest
import torch
from detectron2.engine import default_argument_parser

import train_net

CONFIGS = [
    "Shapes/iou_aware_retinanet_slim_R_FPN.yaml",
    "Shapes/gfl_slim_R_FPN.yaml",
    "Shapes/gflv2_slim_R_FPN.yaml",
    "Shapes/lsnet_slim_R_FPN.yaml",
    "Shapes/lsnet_contour_slim_R_FPN.yaml",
    "Stickmen/lsnet_keypoint_slim_R_FPN.yaml",
    "Shapes/faster_rcnn_slim_R_FPN_focal_iou.yaml",
]


def _data(config):
    return "stickmen" if config.startswith("Stickmen/") else "shapes"

# So that a barely trained model still detects something.
ZERO_SCORE_THRESHOLDS = [
    "MODEL.RETINANET.SCORE_THRESH_TEST", "0.0",
    "MODEL.GFL.SCORE_THRESH_TEST", "0.0",
    "MODEL.LSNET.SCORE_THRESH_TEST", "0.0",
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0",
]  # fmt: skip


def _load_export_tool(repo_root):
    # By file path, under a unique name: "export" is too generic a module name to rely on sys.path.
    spec = importlib.util.spec_from_file_location("iou_aware_export_tool", os.path.join(repo_root, "tools", "export.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def export_tool(repo_root):
    return _load_export_tool(repo_root)


@pytest.fixture(scope="module", params=CONFIGS)
def trained_weights(request, repo_root, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("train_for_export")
    args = default_argument_parser().parse_args(
        [
            "--config-file", f"{repo_root}/configs/{request.param}",
            "DATASETS.TRAIN", f"('{_data(request.param)}_tiny_train',)",
            "DATASETS.TEST", f"('{_data(request.param)}_tiny_val',)",
            "INPUT.MIN_SIZE_TRAIN", "(128,)",
            "INPUT.MAX_SIZE_TRAIN", "128",
            "INPUT.MIN_SIZE_TEST", "128",
            "INPUT.MAX_SIZE_TEST", "128",
            "SOLVER.IMS_PER_BATCH", "2",
            "SOLVER.MAX_ITER", "4",
            "SOLVER.WARMUP_ITERS", "2",
            "SOLVER.STEPS", "(3,)",
            "DATALOADER.NUM_WORKERS", "0",
            *ZERO_SCORE_THRESHOLDS,
            "SEED", "0",
            "OUTPUT_DIR", str(output_dir),
        ]
    )  # fmt: skip
    train_net.main(args)
    weights = output_dir / "model_final.pth"
    assert weights.is_file()
    return request.param, weights


def _export_args(repo_root, output, weights, config=CONFIGS[0]):
    return [
        "--config-file", f"{repo_root}/configs/{config}",
        "--output", str(output),
        "--image-size", "96",
        "MODEL.WEIGHTS", str(weights),
        "DATASETS.TEST", f"('{_data(config)}_tiny_val',)",
        "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "128",
        *ZERO_SCORE_THRESHOLDS,
    ]  # fmt: skip


def test_export_traces_the_model_and_matches_the_eager_model(export_tool, trained_weights, repo_root, tmp_path):
    config, weights = trained_weights
    result = export_tool.main(_export_args(repo_root, tmp_path / "export", weights, config))
    assert result["path"] == str(tmp_path / "export" / "model.ts")
    assert os.path.isfile(result["path"])
    assert result["num_detections"] > 0  # score threshold 0: the untrained model still detects
    assert result["same_image_ok"], result
    assert result["max_box_diff"] <= 1e-3 and result["max_score_diff"] <= 1e-5
    # The second check ran on another size, and the traced model matched the eager one there too.
    assert result["other_image_size"] is not None and tuple(result["other_image_size"]) != (128, 128)
    assert result["other_image_ok"] is True, result["other_image"]
    assert export_tool.exit_status(result) == 0

    loaded = torch.jit.load(result["path"])
    outputs = loaded(torch.zeros(3, 128, 128))
    assert isinstance(outputs, tuple) and all(isinstance(x, torch.Tensor) for x in outputs)


# Refused before exporting, with the reason (the exporter itself would kill the process).
ONNX_UNSUPPORTED = {"Shapes/lsnet_contour_slim_R_FPN.yaml": "contour", "Stickmen/lsnet_keypoint_slim_R_FPN.yaml": "keypoint"}


def test_onnx_export_runs_in_onnx_runtime_and_matches_the_eager_model(export_tool, trained_weights, repo_root, tmp_path):
    config, weights = trained_weights
    if config in ONNX_UNSUPPORTED:
        with pytest.raises(SystemExit, match=f"cannot export LSNet to ONNX: LSNet's {ONNX_UNSUPPORTED[config]} landmarks.*aten::reshape"):
            export_tool.main(["--format", "onnx", *_export_args(repo_root, tmp_path / "onnx", weights, config)])
        return
    result = export_tool.main(["--format", "onnx", "--time", "1", *_export_args(repo_root, tmp_path / "onnx", weights, config)])
    assert result["path"] == str(tmp_path / "onnx" / "model.onnx") and os.path.isfile(result["path"])
    assert result["eager_ms"] > 0 and result["exported_ms"] > 0
    assert result["num_detections"] > 0
    assert result["same_image_ok"], result
    # Dynamic height and width: the same file on a 96 px image.
    assert tuple(result["other_image_size"]) != (128, 128)
    assert result["other_image_ok"] is True, result["other_image"]
    assert export_tool.exit_status(result) == 0


def test_export_names_a_missing_weights_file(export_tool, repo_root, tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(SystemExit, match="MODEL.WEIGHTS file not found: .*nope.pth"):
        export_tool.main(_export_args(repo_root, tmp_path / "export", missing))
    assert not (tmp_path / "export").exists()  # nothing was done


def test_the_check_reports_a_different_count_or_boxes_beyond_tolerance_as_a_mismatch(export_tool):
    from detectron2.structures import Boxes, Instances

    def instances(boxes, scores):
        return Instances(
            (64, 64),
            pred_boxes=Boxes(torch.tensor(boxes, dtype=torch.float32)),
            scores=torch.tensor(scores),
            pred_classes=torch.zeros(len(scores), dtype=torch.int64),
        )

    eager = instances([[1.0, 2.0, 30.0, 40.0], [5.0, 5.0, 9.0, 9.0]], [0.9, 0.5])
    assert export_tool.compare(eager, instances([[1.0, 2.0, 30.0005, 40.0], [5.0, 5.0, 9.0, 9.0]], [0.9, 0.5]))["ok"]
    assert not export_tool.compare(eager, instances([[1.0, 2.0, 30.01, 40.0], [5.0, 5.0, 9.0, 9.0]], [0.9, 0.5]))["ok"]
    assert not export_tool.compare(eager, instances([[1.0, 2.0, 30.0, 40.0], [5.0, 5.0, 9.0, 9.0]], [0.9, 0.5001]))["ok"]
    fewer = export_tool.compare(eager, instances([[1.0, 2.0, 30.0, 40.0]], [0.9]))
    assert not fewer["ok"] and fewer["traced_num_detections"] == 1
    # Scores that tie within the tolerance may come in another order (backends break ties differently).
    tied = instances([[1.0, 2.0, 30.0, 40.0], [5.0, 5.0, 9.0, 9.0]], [0.5, 0.5])
    assert export_tool.compare(tied, instances([[5.0, 5.0, 9.0, 9.0], [1.0, 2.0, 30.0, 40.0]], [0.5, 0.5]))["ok"]
    swapped = instances([[5.0, 5.0, 9.0, 9.0], [1.0, 2.0, 30.0, 40.0]], [0.9, 0.5])
    assert not export_tool.compare(eager, swapped)["ok"]  # a box with another score is not a match
    assert export_tool.exit_status({"same_image_ok": True, "other_image_ok": False}) == 2
    assert export_tool.exit_status({"same_image_ok": True, "other_image_ok": None}) == 0
