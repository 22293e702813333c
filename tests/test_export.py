"""tools/export.py traces each meta-architecture of the package to TorchScript and to ONNX (run by
ONNX Runtime) and checks both against the eager model on two image sizes, a blank image and images
with no detection, exactly one and as many as the detection cap; iou_aware.deployment.OnnxPredictor
gives DefaultPredictor's detections."""

import os
import sys

import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.engine import default_argument_parser
from detectron2.modeling import build_model

import train_net
from iou_aware.config import add_iou_aware_config

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
    import export  # tools/export.py, first on sys.path (conftest)

    assert os.path.dirname(export.__file__) == os.path.join(repo_root, "tools")
    return export


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


def _export_args(repo_root, output, weights, config=CONFIGS[0], score_thresh=0.0, cap=None):
    thresholds = [value if value != "0.0" else str(score_thresh) for value in ZERO_SCORE_THRESHOLDS]
    return [
        "--config-file", f"{repo_root}/configs/{config}",
        "--output", str(output),
        "--image-size", "96",
        "MODEL.WEIGHTS", str(weights),
        "DATASETS.TEST", f"('{_data(config)}_tiny_val',)",
        "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "128",
        *thresholds,
        *(["TEST.DETECTIONS_PER_IMAGE", str(cap)] if cap else []),
    ]  # fmt: skip


# --- Images with no detection, exactly one and as many as the detection cap --------------------
# A graph records one execution: sizes or branches frozen from the tracing image break on an image
# whose detections are fewer (none at all) or more (the cap). The score threshold and the cap are
# chosen with the eager model so that, among a few images, one has no detection, one exactly one
# and one reaches the cap; the export is then checked on all three.

MAX_CAP = 5
BLANK_VALUE = 128  # tools/export.py's blank check image
SCORE_MARGIN = 5e-6  # every detection's score is this far from the threshold (backends differ by about 1e-7)


def _is_blank(path):
    return os.path.basename(path) == "blank.png"


def _pool_images(config, folder):
    """name -> 128 x 128 image file: the tiny validation images, a blank (uniform gray, as the
    tool's own blank check image) and a black image."""
    import cv2
    import numpy as np
    from detectron2.data import DatasetCatalog

    folder.mkdir(parents=True, exist_ok=True)
    paths = {f"val{i}": d["file_name"] for i, d in enumerate(DatasetCatalog.get(f"{_data(config)}_tiny_val"))}
    for name, value in (("blank", BLANK_VALUE), ("black", 0)):
        paths[name] = str(folder / f"{name}.png")
        cv2.imwrite(paths[name], np.full((128, 128, 3), value, np.uint8))
    return paths


def _eager_model(export_tool, repo_root, config, weights, score_thresh=0.0, cap=1000):
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.modeling import build_model

    args = export_tool.get_parser().parse_args(_export_args(repo_root, "unused", weights, config, score_thresh, cap))
    cfg = export_tool.setup_cfg(args)
    model = build_model(cfg)
    DetectionCheckpointer(model).load(str(weights))
    return cfg, model.eval()


def choose_scenarios(scores, max_cap=MAX_CAP, margin=SCORE_MARGIN):
    """(threshold, cap, {"none": name, "one": name, "cap": name}) from the scores of each image's
    detections at threshold 0 with no cap: above the threshold, the "none" image (the blank one
    if it can be) has no detection, "one" exactly one, "cap" at least ``cap`` >= 2. A detection
    survives a higher threshold exactly when it scores above it (NMS only lets higher scores
    suppress lower ones), so counting scores above the threshold predicts the detections."""
    values = torch.cat([s.flatten() for s in scores.values()]).unique().sort().values
    best = None
    for low, high in zip(values[:-1].tolist(), values[1:].tolist()):
        if high - low < 2 * margin:
            continue
        threshold = (low + high) / 2
        counts = {name: int((s > threshold).sum()) for name, s in scores.items()}
        none = [n for n, c in counts.items() if c == 0]
        one = [n for n, c in counts.items() if c == 1]
        many = max(counts.values())
        if not none or not one or many < 2:
            continue
        key = ("blank" in none, min(many, max_cap))
        if best is None or key > best[0]:
            cap = min(many, max_cap)
            chosen = {
                "none": "blank" if "blank" in none else none[0],
                "one": one[0],
                "cap": next(n for n, c in counts.items() if c >= cap),
            }
            best = (key, threshold, cap, chosen)
    assert best is not None, f"no threshold gives images with 0, 1 and >= 2 detections: {scores}"
    return best[1:]


def _scenarios(export_tool, repo_root, config, weights, folder):
    """Threshold, cap and {"none" / "one" / "cap": image file} for ``weights`` (see choose_scenarios)."""
    assert export_tool.BLANK_VALUE == BLANK_VALUE
    paths = _pool_images(config, folder)
    cfg, model = _eager_model(export_tool, repo_root, config, weights)
    inference = export_tool.inference_func_for(model)
    with torch.no_grad():
        scores = {n: inference(model, [{"image": export_tool.load_image(cfg, p)}])[0].scores for n, p in paths.items()}
    threshold, cap, chosen = choose_scenarios(scores)
    return threshold, cap, {role: paths[name] for role, name in chosen.items()}


def _export_and_check(export_tool, repo_root, config, weights, output, fmt, scenario, trace_on, *extra):
    """tools/export.py on ``scenario``'s threshold and cap, traced on its ``trace_on`` image and
    checked on the other two; returns the tool's result."""
    threshold, cap, images = scenario
    others = [role for role in ("none", "one", "cap") if role != trace_on]
    # The tool checks a blank image of the tracing size itself: the pool's blank image is that one.
    check_names = {r: "blank image" if _is_blank(images[r]) else f"check image {images[r]}" for r in others}
    args = [
        "--format", fmt, "--sample-image", images[trace_on], *extra,
        *[a for role in others if not _is_blank(images[role]) for a in ("--check-image", images[role])],
        *_export_args(repo_root, output, weights, config, threshold, cap),
    ]  # fmt: skip
    result = export_tool.main(args)
    checks = {c["name"]: c for c in result["checks"]}
    counts = {trace_on: checks["same image as the trace"]["num_detections"]}
    for role in others:
        found = checks[check_names[role]]
        assert found["ok"], (found, scenario)
        counts[role] = found["num_detections"]
    assert counts == {"none": 0, "one": 1, "cap": cap}, (counts, scenario)
    return result


@pytest.fixture(scope="module")
def scenario(export_tool, trained_weights, repo_root, tmp_path_factory):
    config, weights = trained_weights
    return _scenarios(export_tool, repo_root, config, weights, tmp_path_factory.mktemp("scenario_images"))


def test_choose_scenarios_finds_no_detection_one_and_the_cap():
    scores = {
        "blank": torch.tensor([0.30, 0.10]),
        "val0": torch.tensor([0.80, 0.35, 0.2]),
        "val1": torch.tensor([0.90, 0.85, 0.70, 0.60, 0.5, 0.45, 0.41]),
    }
    threshold, cap, chosen = choose_scenarios(scores)
    assert 0.35 < threshold < 0.41 and cap == 5
    assert chosen == {"none": "blank", "one": "val0", "cap": "val1"}
    with pytest.raises(AssertionError, match="no threshold"):
        choose_scenarios({"blank": torch.tensor([0.9, 0.8]), "val0": torch.tensor([0.5])})


def test_export_traces_the_model_and_matches_the_eager_model(
    export_tool, trained_weights, scenario, repo_root, tmp_path
):
    """TorchScript, traced on the image that reaches the cap; checked on the one with none and the
    one with exactly one detection, a blank image and another size."""
    config, weights = trained_weights
    result = _export_and_check(
        export_tool, repo_root, config, weights, tmp_path / "export", "torchscript", scenario, "cap"
    )
    assert result["path"] == str(tmp_path / "export" / "model.ts")
    assert os.path.isfile(result["path"]) and os.path.isfile(tmp_path / "export" / "export.json")
    assert result["num_detections"] == scenario[1]  # the tracing image reaches the cap
    assert result["same_image_ok"], result
    assert result["max_box_diff"] <= 1e-3 and result["max_score_diff"] <= 1e-5
    # The second check ran on another size, and the traced model matched the eager one there too.
    assert result["other_image_size"] is not None and tuple(result["other_image_size"]) != (128, 128)
    assert result["other_image_ok"] is True, result["other_image"]
    assert all(c["ok"] for c in result["checks"]), result["checks"]
    assert export_tool.exit_status(result) == 0

    loaded = torch.jit.load(result["path"])
    outputs = loaded(torch.zeros(3, 128, 128))
    assert isinstance(outputs, tuple) and all(isinstance(x, torch.Tensor) for x in outputs)


@pytest.fixture(scope="module")
def onnx_export(export_tool, trained_weights, scenario, repo_root, tmp_path_factory):
    """ONNX export of the trained model, traced on the image that reaches the cap (as a trained
    model's export usually is) and checked on all three."""
    config, weights = trained_weights
    output = tmp_path_factory.mktemp("onnx")
    result = _export_and_check(export_tool, repo_root, config, weights, output, "onnx", scenario, "cap", "--time", "1")
    return result, output


def test_onnx_export_runs_in_onnx_runtime_and_matches_the_eager_model(export_tool, onnx_export, scenario):
    result, output = onnx_export
    assert result["path"] == str(output / "model.onnx") and os.path.isfile(result["path"])
    assert result["eager_ms"] > 0 and result["exported_ms"] > 0
    assert result["num_detections"] == scenario[1]
    assert result["same_image_ok"], result
    # Dynamic height and width: the same file on a 96 px image.
    assert tuple(result["other_image_size"]) != (128, 128)
    assert result["other_image_ok"] is True, result["other_image"]
    assert all(c["ok"] for c in result["checks"]), result["checks"]
    assert export_tool.exit_status(result) == 0


def test_onnx_export_describes_its_outputs_in_json(onnx_export, trained_weights):
    import json

    import onnx

    config, _ = trained_weights
    result, output = onnx_export
    with open(output / "export.json") as f:
        description = json.load(f)
    graph_outputs = [o.name for o in onnx.load(str(output / "model.onnx")).graph.output]
    assert [o["name"] for o in description["outputs"]] == graph_outputs
    assert graph_outputs[-1] == "image_size" and {"pred_boxes", "scores", "pred_classes"} <= set(graph_outputs)
    assert description["input"]["resize"] == {"type": "ResizeShortestEdge", "min_size": 128, "max_size": 128}
    assert description["metadata"]["dataset"] == f"{_data(config)}_tiny_val"
    assert len(description["metadata"]["thing_classes"]) >= 1
    if "contour" in config:
        assert "pred_polygons" in graph_outputs and description["postprocess"]["lsnet"] == {"min_box_area": 0.0}
    if "keypoint" in config:
        assert "pred_keypoints" in graph_outputs


def _matches(eager, exported, tolerance=1e-2):
    """Same count; each eager detection paired with its own exported one (same class, box and
    keypoints within ``tolerance`` px, score within 1e-5); masks agree on 99.9% of their pixels."""
    assert len(eager) == len(exported)
    taken = set()
    for i in range(len(eager)):
        box = (exported.pred_boxes.tensor - eager.pred_boxes.tensor[i]).abs().amax(dim=1)
        equal = (box <= tolerance) & ((exported.scores - eager.scores[i]).abs() <= 1e-5)
        equal &= exported.pred_classes == eager.pred_classes[i]
        candidates = [j for j in torch.nonzero(equal).flatten().tolist() if j not in taken]
        assert candidates, f"eager detection {i} has no exported match"
        j = candidates[0]
        taken.add(j)
        if eager.has("pred_keypoints"):
            torch.testing.assert_close(exported.pred_keypoints[j], eager.pred_keypoints[i], atol=tolerance, rtol=0)
        if eager.has("pred_masks"):
            assert exported.pred_masks.shape[1:] == eager.pred_masks.shape[1:]
            disagree = (exported.pred_masks[j] != eager.pred_masks[i]).float().mean()
            assert disagree <= 1e-3, f"detection {i}: masks differ on {float(disagree):.2%} of the pixels"


def test_onnx_predictor_gives_the_default_predictors_detections(
    export_tool, onnx_export, scenario, trained_weights, repo_root, tmp_path
):
    """iou_aware.deployment.OnnxPredictor on BGR images of other sizes than the network input (the
    test-time resize and the way back to the original image) gives DefaultPredictor's detections
    (same config and weights), masks and keypoints included; demo/demo.py --onnx draws them."""
    import cv2
    import numpy as np
    from detectron2.engine import DefaultPredictor

    from iou_aware.deployment import OnnxPredictor

    config, weights = trained_weights
    threshold, cap, images = scenario
    _, output = onnx_export
    cfg, _ = _eager_model(export_tool, repo_root, config, weights, threshold, cap)
    eager, exported = DefaultPredictor(cfg), OnnxPredictor(str(output))
    assert exported.metadata.thing_classes == eager.metadata.thing_classes
    counts = {}
    for role, sizes in (("none", [(128, 128)]), ("one", [(128, 128)]), ("cap", [(128, 128), (192, 256), (100, 80)])):
        original = cv2.imread(images[role])
        for height, width in sizes:
            image = cv2.resize(original, (width, height), interpolation=cv2.INTER_LINEAR)
            expected = eager(image)["instances"]
            found = exported(image)["instances"]
            assert found.image_size == (height, width)
            _matches(expected, found)
            counts[role, height] = len(found)
    # Boxes that the clip to the image leaves empty are dropped after the graph, as in the eager model.
    assert counts["none", 128] == 0 and counts["cap", 128] >= 1, counts
    with pytest.raises(ValueError, match="uint8"):
        exported(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(ValueError, match=r"numpy array \(H, W, 3\)"):
        exported(np.zeros((64, 64), np.uint8))

    sys.path.insert(0, f"{repo_root}/demo")
    import demo

    drawn = tmp_path / "drawn.png"
    assert (
        demo.main(
            ["--onnx", str(output), "--input", images["cap"], "--output", str(drawn), "--confidence-threshold", "0"]
        )
        == 0
    )
    assert drawn.is_file() and not np.array_equal(cv2.imread(str(drawn)), cv2.imread(images["cap"]))


def test_onnx_predictor_names_what_is_missing(tmp_path):
    from iou_aware.deployment import OnnxPredictor

    with pytest.raises(FileNotFoundError, match="export.json not found: export the model with tools/export.py"):
        OnnxPredictor(str(tmp_path))


def test_export_names_a_missing_weights_file(export_tool, repo_root, tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(SystemExit, match="MODEL.WEIGHTS file not found: .*nope.pth"):
        export_tool.main(_export_args(repo_root, tmp_path / "export", missing))
    assert not (tmp_path / "export").exists()  # nothing was done


def test_export_refuses_class_names_that_do_not_match_the_models_class_count(export_tool, repo_root, tmp_path):
    """A model of 2 classes with the 4 names of shapes_tiny_val would export a wrong export.json."""
    torch.manual_seed(0)
    cfg = get_cfg()
    add_iou_aware_config(cfg)
    cfg.merge_from_file(f"{repo_root}/configs/{CONFIGS[0]}")
    cfg.MODEL.RETINANET.NUM_CLASSES = 2
    cfg.MODEL.DEVICE = "cpu"
    DetectionCheckpointer(build_model(cfg), save_dir=str(tmp_path)).save("two_classes")
    args = _export_args(repo_root, tmp_path / "export", tmp_path / "two_classes.pth") + [
        "MODEL.RETINANET.NUM_CLASSES",
        "2",
    ]
    with pytest.raises(
        SystemExit, match="MODEL.RETINANET.NUM_CLASSES = 2 classes, but the test dataset 'shapes_tiny_val'"
    ):
        export_tool.main(args)
    assert not (tmp_path / "export").exists()


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
    assert not export_tool.compare(eager, instances([[1.0, 2.0, 30.0, 40.0], [5.0, 5.0, 9.0, 9.0]], [0.9, 0.5001]))[
        "ok"
    ]
    fewer = export_tool.compare(eager, instances([[1.0, 2.0, 30.0, 40.0]], [0.9]))
    assert not fewer["ok"] and fewer["traced_num_detections"] == 1
    # Scores that tie within the tolerance may come in another order (backends break ties differently).
    tied = instances([[1.0, 2.0, 30.0, 40.0], [5.0, 5.0, 9.0, 9.0]], [0.5, 0.5])
    assert export_tool.compare(tied, instances([[5.0, 5.0, 9.0, 9.0], [1.0, 2.0, 30.0, 40.0]], [0.5, 0.5]))["ok"]
    swapped = instances([[5.0, 5.0, 9.0, 9.0], [1.0, 2.0, 30.0, 40.0]], [0.9, 0.5])
    assert not export_tool.compare(eager, swapped)["ok"]  # a box with another score is not a match
    # Where a cut falls inside a tie, another detection of the same class and score may be kept.
    other = export_tool.compare(tied, instances([[1.0, 2.0, 30.0, 40.0], [50.0, 5.0, 60.0, 9.0]], [0.5, 0.5]))
    assert other["ok"] and other["tie_substitutions"] == 1 and other["max_box_diff"] == 0.0
    assert not export_tool.compare(eager, instances([[1.0, 2.0, 30.0, 40.0], [50.0, 5.0, 60.0, 9.0]], [0.9, 0.5]))["ok"]
    assert not export_tool.compare(tied, instances([[1.0, 2.0, 30.0, 40.0], [50.0, 5.0, 60.0, 9.0]], [0.5, 0.4]))["ok"]
    assert export_tool.exit_status({"same_image_ok": True, "other_image_ok": False}) == 2
    assert export_tool.exit_status({"same_image_ok": True, "other_image_ok": None}) == 0


# The dense heads' decoding paths: anchors and deltas, GFL's distributions (with DGQP), LSNet's
# landmarks (contours; keypoints with a box set).
UNTRAINED_CONFIGS = [
    "Shapes/iou_aware_retinanet_slim_R_FPN.yaml",
    "Shapes/gflv2_slim_R_FPN.yaml",
    "Shapes/lsnet_contour_slim_R_FPN.yaml",
    "Stickmen/lsnet_keypoint_slim_R_FPN.yaml",
]


def _untrained_weights(repo_root, config, folder):
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    from iou_aware.config import add_iou_aware_config

    cfg = get_cfg()
    add_iou_aware_config(cfg)
    cfg.merge_from_file(f"{repo_root}/configs/{config}")
    torch.manual_seed(0)
    DetectionCheckpointer(build_model(cfg), save_dir=str(folder)).save("untrained")
    return folder / "untrained.pth"


@pytest.mark.parametrize("config", UNTRAINED_CONFIGS)
def test_an_untrained_model_exports_to_onnx_traced_on_an_image_without_detections(
    export_tool, config, repo_root, tmp_path
):
    """Untrained weights (scores near the prior, as after a few iterations); traced on the image
    with no detection, so that nothing of an empty trace may freeze, and checked on the images
    with exactly one detection and with the cap."""
    weights = _untrained_weights(repo_root, config, tmp_path)
    scenario = _scenarios(export_tool, repo_root, config, weights, tmp_path / "images")
    result = _export_and_check(export_tool, repo_root, config, weights, tmp_path / "onnx", "onnx", scenario, "none")
    assert result["num_detections"] == 0 and export_tool.exit_status(result) == 0
