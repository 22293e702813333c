"""A user's own COCO files through --register-coco: RLE masks, box-only annotations, a 5-keypoint
schema; keypoint metadata and OKS sigmas from the JSON."""

import json
import math

import numpy as np
import pytest
from detectron2.data import MetadataCatalog
from detectron2.engine import default_argument_parser
from PIL import Image
from pycocotools import mask as mask_util

import train_net
from iou_aware.data import add_register_coco_argument, keypoint_metadata

KEYPOINTS = ["nose", "left_eye", "right_eye", "LeftHand", "RightHand"]


def _rle(mask):
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def _write(tmp_path, with_box_only, with_keypoints):
    """Two 128 x 128 images; per image a square RLE mask with a hole, a plain RLE rectangle and
    (optionally) a box-only annotation; keypoints on a 5-keypoint category."""
    images, annotations = [], []
    rng = np.random.default_rng(0)
    for image_id in (1, 2):
        pixels = rng.integers(0, 255, size=(128, 128, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / f"{image_id}.png")
        images.append({"id": image_id, "file_name": f"{image_id}.png", "height": 128, "width": 128})
        square = np.zeros((128, 128), bool)
        square[20:70, 10:60] = True
        square[35:50, 25:40] = False  # the hole
        rectangle = np.zeros((128, 128), bool)
        rectangle[80:120, 70:110] = True
        for mask, box in ((square, [10, 20, 50, 50]), (rectangle, [70, 80, 40, 40])):
            annotation = {"segmentation": _rle(mask), "bbox": box, "area": float(mask.sum())}
            if with_keypoints:
                x, y, w, h = box
                points = [
                    [x + w / 2, y + 5],
                    [x + w / 3, y + 4],
                    [x + 2 * w / 3, y + 4],
                    [x + 2, y + h / 2],
                    [x + w - 2, y + h / 2],
                ]
                annotation["keypoints"] = [v for p in points for v in (*p, 2)]
                annotation["num_keypoints"] = 5
            annotations.append(annotation)
        if with_box_only:
            annotations.append({"bbox": [75, 10, 30, 40], "area": 1200.0})
    for i, a in enumerate(annotations):
        a.update(id=i + 1, image_id=1 + (i // (3 if with_box_only else 2)), category_id=1, iscrowd=0)
    category = {"id": 1, "name": "thing"}
    if with_keypoints:
        category.update(keypoints=KEYPOINTS, skeleton=[[1, 2], [1, 3], [4, 5]])
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": [category]}))
    return str(path)


def _train(repo_root, tmp_path, config, json_file, *opts):
    argv = [
        "--config-file", f"{repo_root}/configs/{config}", "--register-coco", "mine", json_file, str(tmp_path),
        "DATASETS.TRAIN", "('mine',)", "DATASETS.TEST", "('mine',)", "MODEL.LSNET.NUM_CLASSES", "1",
        "INPUT.MIN_SIZE_TRAIN", "(128,)", "INPUT.MAX_SIZE_TRAIN", "128", "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "128",
        "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "2", "SOLVER.WARMUP_ITERS", "1", "SOLVER.STEPS", "(1,)",
        "DATALOADER.NUM_WORKERS", "0", "MODEL.LSNET.SCORE_THRESH_TEST", "0.0", "SEED", "0", "OUTPUT_DIR", str(tmp_path / "out"), *opts,
    ]  # fmt: skip
    args = add_register_coco_argument(default_argument_parser()).parse_args(argv)
    results = train_net.main(args)
    with open(tmp_path / "out" / "metrics.json") as f:
        losses = [json.loads(line)["total_loss"] for line in f if "total_loss" in line]
    assert losses and all(math.isfinite(v) for v in losses)
    return results


def test_lsnet_boxes_train_on_rle_masks_and_box_only_annotations(repo_root, tmp_path):
    results = _train(repo_root, tmp_path, "Shapes/lsnet_slim_R_FPN.yaml", _write(tmp_path, True, False))
    assert "AP" in results["bbox"]


def test_lsnet_contours_train_on_rle_masks_with_holes(repo_root, tmp_path):
    results = _train(repo_root, tmp_path, "Shapes/lsnet_contour_slim_R_FPN.yaml", _write(tmp_path, False, False))
    assert "AP" in results["segm"] and "AP" in results["bbox"]


def test_lsnet_pose_trains_on_a_5_keypoint_schema(repo_root, tmp_path):
    json_file = _write(tmp_path, False, True)
    opts = ["MODEL.ROI_KEYPOINT_HEAD.NUM_KEYPOINTS", "5"]
    # Two of the five names are not COCO's: the start-up error names the key to set.
    with pytest.raises(ValueError, match=r"\['LeftHand', 'RightHand'\].*set TEST.KEYPOINT_OKS_SIGMAS to 5 values"):
        _train(repo_root, tmp_path, "Stickmen/lsnet_keypoint_slim_R_FPN.yaml", json_file, *opts)
    opts += ["TEST.KEYPOINT_OKS_SIGMAS", "[0.026, 0.025, 0.025, 0.06, 0.06]"]
    results = _train(repo_root, tmp_path, "Stickmen/lsnet_keypoint_slim_R_FPN.yaml", json_file, *opts)
    assert "AP" in results["keypoints"]
    metadata = MetadataCatalog.get("mine")
    assert metadata.keypoint_names == KEYPOINTS
    assert sorted(metadata.keypoint_flip_map) == [("LeftHand", "RightHand"), ("left_eye", "right_eye")]


def test_keypoint_metadata_from_coco_categories():
    names = ["nose", "left_eye", "right_eye", "L-ear", "R-ear", "LeftKnee", "RightKnee", "tail"]
    metadata = keypoint_metadata(
        [{"id": 1, "name": "animal", "keypoints": names, "skeleton": [[1, 2], [6, 7], [8, 9]]}]
    )
    assert metadata["keypoint_names"] == names
    assert metadata["keypoint_flip_map"] == [("left_eye", "right_eye"), ("L-ear", "R-ear"), ("LeftKnee", "RightKnee")]
    # 1-based pairs; [8, 9] points past the list and is dropped.
    assert [(a, b) for a, b, _ in metadata["keypoint_connection_rules"]] == [
        ("nose", "left_eye"),
        ("LeftKnee", "RightKnee"),
    ]
    assert keypoint_metadata([{"id": 1, "name": "box only"}]) == {}
