#!/usr/bin/env python
"""What LSNet's contour representation alone costs: the GT masks, replaced by the polygons of their
own C sampled contour points, evaluated as perfect detections.

    python dev/contour_ceiling.py --dataset shapes_val --num-points 36 --output output/contour_ceiling

Every GT instance of the dataset becomes one prediction of its own class with score 1: the mask is
the filled polygon of :func:`iou_aware.data.contour_landmarks` (the training target of the contour
task, C points at equal arc length), the box is the extent of those points (what the contour task
predicts as the box). COCOEvaluator (segm and bbox, per category) then gives the AP that a model
with perfect contour regression and perfect scores would reach; the mask IoU of each polygon with
its GT mask is summarized per category and COCO size (small < 32^2 <= medium < 96^2 px^2 <= large).
Nothing is trained or loaded; a few seconds for 200 images. Writes results.json to --output.
"""

import argparse
import json
import os
from collections import defaultdict

import numpy as np
import pycocotools.mask as mask_util
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, Instances
from detectron2.utils.logger import setup_logger

from iou_aware.config import add_iou_aware_config
from iou_aware.data import add_user_dataset_arguments, contour_landmarks, register_user_datasets
from iou_aware.evaluation import build_coco_evaluator
from iou_aware.modeling.postprocessing import rasterize_polygons
from iou_aware.structures import mask_to_polygons

SMALL, LARGE = 32**2, 96**2


def size_name(area: float) -> str:
    """COCO's size range of an object of ``area`` px^2."""
    return "small" if area < SMALL else "medium" if area < LARGE else "large"


def _gt_mask(segmentation, height: int, width: int) -> np.ndarray:
    """(H, W) bool mask of a COCO segmentation: polygons, uncompressed or compressed RLE."""
    if isinstance(segmentation, dict) and isinstance(segmentation["counts"], (str, bytes)):
        counts = segmentation["counts"]
        return mask_util.decode(
            dict(segmentation, counts=counts.encode() if isinstance(counts, str) else counts)
        ).astype(bool)
    rles = mask_util.frPyObjects(segmentation, height, width)
    rle = mask_util.merge(rles) if isinstance(rles, list) else rles
    return mask_util.decode(rle).astype(bool)


def contour_ceiling(dataset: str, num_points: int, output_dir: str = None):
    """COCO results of the GT contours as predictions, and their mask IoU per category and size."""
    cfg = get_cfg()
    add_iou_aware_config(cfg)
    cfg.MODEL.MASK_ON = True
    evaluator = build_coco_evaluator(cfg, dataset, output_dir)
    evaluator.reset()
    names = MetadataCatalog.get(dataset).thing_classes
    ious = defaultdict(list)
    for record in DatasetCatalog.get(dataset):
        height, width = record["height"], record["width"]
        annotations = [a for a in record.get("annotations", []) if not a.get("iscrowd", 0)]
        if not annotations:
            evaluator.process([record], [{"instances": Instances((height, width))}])
            continue
        # RLE masks are traced into polygons as LandmarkDatasetMapper does for the contour task.
        outlines = [
            a["segmentation"] if isinstance(a["segmentation"], list)
            else mask_to_polygons(_gt_mask(a["segmentation"], height, width))
            for a in annotations
        ]  # fmt: skip
        polygons = torch.as_tensor(
            np.stack([contour_landmarks(outline, num_points)[:-1] for outline in outlines]), dtype=torch.float64
        )
        masks = rasterize_polygons(polygons, height, width)
        instances = Instances((height, width))
        instances.pred_boxes = Boxes(torch.cat([polygons.amin(dim=1), polygons.amax(dim=1)], dim=1).float())
        instances.scores = torch.ones(len(annotations))
        instances.pred_classes = torch.as_tensor([a["category_id"] for a in annotations])
        instances.pred_masks = masks
        evaluator.process([record], [{"instances": instances}])
        for annotation, mask in zip(annotations, masks.numpy()):
            gt = _gt_mask(annotation["segmentation"], height, width)
            iou = float((gt & mask).sum() / max((gt | mask).sum(), 1))
            area = float(gt.sum())
            klass = names[annotation["category_id"]]
            for key in ("all", f"class {klass}", f"size {size_name(area)}", f"{klass} {size_name(area)}"):
                ious[key].append(iou)
    results = evaluator.evaluate()
    summary = {
        key: {
            "instances": len(v),
            "mean_mask_iou": float(np.mean(v)),
            "share_iou_below_0.75": float(np.mean(np.less(v, 0.75))),
        }
        for key, v in sorted(ious.items())
    }
    report = {"dataset": dataset, "num_points": num_points, "coco": results, "mask_iou": summary}
    if output_dir:
        os.makedirs(output_dir, exist_ok=True)
        with open(os.path.join(output_dir, "results.json"), "w") as f:
            json.dump(report, f, indent=2)
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="shapes_val")
    parser.add_argument("--num-points", type=int, default=36, help="contour points (MODEL.LSNET.NUM_CONTOUR_POINTS)")
    parser.add_argument("--output", default=None, help="folder for results.json")
    args = add_user_dataset_arguments(parser).parse_args(argv)
    register_user_datasets(args)
    setup_logger(name="iou_aware")
    setup_logger(name="detectron2")
    report = contour_ceiling(args.dataset, args.num_points, args.output)
    for task in ("segm", "bbox"):
        print(task, {k: round(v, 2) for k, v in report["coco"][task].items() if not k.startswith("AP-")})
        print(task, "per class", {k: round(v, 2) for k, v in report["coco"][task].items() if k.startswith("AP-")})
    for key, value in report["mask_iou"].items():
        print(
            f"{key:>20}: {value['instances']:4d} instances, mean mask IoU {value['mean_mask_iou']:.3f}, "
            f"IoU < 0.75: {value['share_iou_below_0.75']:.1%}"
        )


if __name__ == "__main__":
    main()
