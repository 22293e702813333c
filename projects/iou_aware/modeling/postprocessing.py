"""Inference steps shared by the dense heads: candidate selection (score threshold, then top-k) per
level, the merge of the levels with class-wise NMS, and polygons filled into masks."""
from typing import List, Tuple

import numpy as np
import pycocotools.mask as mask_util
import torch
from detectron2.layers import batched_nms
from detectron2.structures import Instances

__all__ = ["select_topk_candidates", "merge_levels_with_nms", "rasterize_polygons"]


def select_topk_candidates(
    scores: torch.Tensor, score_thresh: float, topk: int
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep the (location, class) pairs with score > ``score_thresh``, then the ``topk`` best.

    As Detectron2's DenseDetector does per level, but on any score (S, joint quality score, ...).

    Args:
        scores: (R, K) scores of R locations / anchors and K classes.
    Returns:
        scores (M,), location indices (M,), class indices (M,), sorted by decreasing score.
    """
    keep = scores > score_thresh
    candidates = torch.nonzero(keep)  # (M, 2): location, class
    kept_scores = scores[keep]
    num_topk = min(topk, candidates.size(0))
    # sort (as Detectron2 does) rather than topk: same order for ties as the stock models.
    kept_scores, order = kept_scores.sort(descending=True)
    location_idxs, class_idxs = candidates[order[:num_topk]].unbind(dim=1)
    return kept_scores[:num_topk], location_idxs, class_idxs


def merge_levels_with_nms(
    per_level: List[Instances], image_size: Tuple[int, int], nms_thresh: float, max_detections: int
) -> Instances:
    """Concatenate the detections of all levels, clip their boxes to the image, apply class-wise
    NMS and keep the ``max_detections`` best.

    Args:
        per_level: Instances with pred_boxes, scores and pred_classes, one per level.
        image_size: (height, width) of the network's input image.
    """
    detections = Instances.cat(per_level)
    detections.pred_boxes.clip(image_size)
    keep = batched_nms(detections.pred_boxes.tensor, detections.scores, detections.pred_classes, nms_thresh)
    return detections[keep[:max_detections]]


def rasterize_polygons(polygons: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Fill polygons into masks with COCO's rasterization (one C call for all polygons), so that a
    polygon equal to a COCO ground-truth polygon gives its ground-truth mask.

    Args:
        polygons: (R, N, 2) absolute (x, y) vertices, N >= 3.
        height, width: mask size in pixels.
    Returns:
        (R, height, width) bool masks on the device of ``polygons``.
    """
    if len(polygons) == 0:
        return torch.zeros((0, height, width), dtype=torch.bool, device=polygons.device)
    flat = polygons.detach().to("cpu", torch.float64).flatten(1).numpy()
    rles = mask_util.frPyObjects([p.tolist() for p in flat], height, width)
    masks = mask_util.decode(rles)  # (H, W, R) uint8
    return torch.from_numpy(np.ascontiguousarray(masks.transpose(2, 0, 1))).to(polygons.device, torch.bool)
