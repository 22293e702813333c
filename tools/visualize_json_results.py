#!/usr/bin/env python
"""Draw a model's COCO-format predictions (from COCOEvaluator) next to the ground truth.

    python tools/visualize_json_results.py \
        --input output/quickstart/inference/shapes_val/coco_instances_results.json \
        --dataset shapes_val --output output/quickstart/visualizations --num-images 8

Each output PNG shows the predictions above ``--conf-threshold`` (left) and the annotations
(right), drawn by Detectron2's Visualizer: boxes, masks and keypoints when present.
"""

import argparse
import json
import os
from collections import defaultdict

import cv2
import numpy as np
import tqdm
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, BoxMode, Instances
from detectron2.utils.logger import setup_logger
from detectron2.utils.visualizer import Visualizer

import iou_aware  # noqa: F401  (registers the synthetic datasets)
from iou_aware.data import add_user_dataset_arguments, register_user_datasets


def predictions_to_instances(predictions, image_size, conf_threshold, category_map):
    """COCO result dicts of one image -> Instances with pred_boxes/scores/classes(/masks/keypoints)."""
    kept = [p for p in predictions if p["score"] >= conf_threshold]
    instances = Instances(image_size)
    boxes = np.asarray([p["bbox"] for p in kept], dtype=np.float64).reshape(-1, 4)
    instances.pred_boxes = Boxes(BoxMode.convert(boxes, BoxMode.XYWH_ABS, BoxMode.XYXY_ABS))
    instances.scores = np.asarray([p["score"] for p in kept])
    instances.pred_classes = np.asarray([category_map[p["category_id"]] for p in kept], dtype=int)
    if kept and "segmentation" in kept[0]:
        instances.pred_masks = [p["segmentation"] for p in kept]
    if kept and "keypoints" in kept[0]:
        keypoints = np.asarray([p["keypoints"] for p in kept], dtype=np.float64).reshape(len(kept), -1, 3)
        keypoints[:, :, :2] += 0.5  # COCO's integer-pixel convention back to pixel coordinates
        instances.pred_keypoints = keypoints
    return instances


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="coco_instances_results.json of COCOEvaluator")
    parser.add_argument("--dataset", required=True, help="registered dataset the results are for")
    parser.add_argument("--output", required=True, help="folder for the PNG files")
    parser.add_argument(
        "--conf-threshold", type=float, default=0.5, help="lowest score drawn (default 0.5, as demo/demo.py)"
    )
    parser.add_argument("--num-images", type=int, default=0, help="draw only the first N images (0: all)")
    args = add_user_dataset_arguments(parser).parse_args(argv)
    register_user_datasets(args)
    setup_logger(name="iou_aware")

    if not os.path.isfile(args.input):
        raise SystemExit(f"No prediction file {args.input}: run the evaluation first.")
    with open(args.input) as f:
        predictions = json.load(f)
    by_image = defaultdict(list)
    for prediction in predictions:
        by_image[prediction["image_id"]].append(prediction)

    dataset = DatasetCatalog.get(args.dataset)
    metadata = MetadataCatalog.get(args.dataset)
    category_map = metadata.thing_dataset_id_to_contiguous_id
    if args.num_images > 0:
        dataset = dataset[: args.num_images]
    os.makedirs(args.output, exist_ok=True)
    for record in tqdm.tqdm(dataset, desc="drawing"):
        image = cv2.imread(record["file_name"], cv2.IMREAD_COLOR)
        if image is None:
            raise SystemExit(f"Cannot read image {record['file_name']}")
        image = image[:, :, ::-1]
        instances = predictions_to_instances(
            by_image[record["image_id"]], image.shape[:2], args.conf_threshold, category_map
        )
        drawn_predictions = Visualizer(image, metadata).draw_instance_predictions(instances).get_image()
        drawn_truth = Visualizer(image, metadata).draw_dataset_dict(record).get_image()
        name = os.path.splitext(os.path.basename(record["file_name"]))[0] + ".png"
        side_by_side = np.concatenate([drawn_predictions, drawn_truth], axis=1)
        cv2.imwrite(os.path.join(args.output, name), side_by_side[:, :, ::-1])
    print(f"Wrote {len(dataset)} images to {args.output}")


if __name__ == "__main__":
    main()
