"""Inference shared by every dense head, one path for all: per level, candidate selection (score
threshold, then top-k) and decoding; then the levels merged, boxes clipped to the image, class-wise
NMS and the detection cap (:func:`decode_dense_detections`). Also polygons filled into masks."""

from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np
import pycocotools.mask as mask_util
import torch
from detectron2.layers import batched_nms
from detectron2.structures import Boxes, Instances

__all__ = [
    "decode_dense_detections",
    "inference_settings",
    "select_topk_candidates",
    "merge_levels_with_nms",
    "rasterize_polygons",
]

# (level, location indices (M,), class indices (M,)) -> {"pred_boxes": (M, 4) XYXY px, other fields (M, ...)}
DecodeFn = Callable[[int, torch.Tensor, torch.Tensor], Dict[str, torch.Tensor]]


def inference_settings(detector) -> Dict[str, float]:
    """The keyword arguments of :func:`decode_dense_detections` from a dense detector's test
    settings, under the attribute names of Detectron2's RetinaNet (``test_score_thresh``,
    ``test_topk_candidates``, ``test_nms_thresh``, ``max_detections_per_image``)."""
    return {
        "score_thresh": detector.test_score_thresh,
        "topk": detector.test_topk_candidates,
        "nms_thresh": detector.test_nms_thresh,
        "max_detections": detector.max_detections_per_image,
    }


def decode_dense_detections(
    level_scores: Sequence[torch.Tensor],
    decode: DecodeFn,
    image_size: Tuple[int, int],
    *,
    score_thresh: float,
    topk: int,
    nms_thresh: float,
    max_detections: int,
) -> Instances:
    """The detections of one image from a dense head's per-level scores.

    Per level: the (location, class) pairs scoring above ``score_thresh``, at most ``topk`` of
    them (:func:`select_topk_candidates`), decoded by ``decode``; then all levels merged, boxes
    clipped to the image, class-wise NMS at ``nms_thresh`` and the ``max_detections`` best kept
    (:func:`merge_levels_with_nms`).

    Args:
        level_scores: per level (Ri, K) detection scores of Ri locations / anchors and K classes.
        decode: ``decode(level, location_idxs, class_idxs)`` -> dict with "pred_boxes" (M, 4)
            XYXY px and any other per-detection fields (M, ...), e.g. "pred_keypoints".
        image_size: (height, width) of the network's input image.
    Returns:
        Instances with pred_boxes, scores, pred_classes and the decoded fields, best first.
    """
    per_level = []
    for level, scores in enumerate(level_scores):
        kept_scores, location_idxs, class_idxs = select_topk_candidates(scores, score_thresh, topk)
        fields = dict(decode(level, location_idxs, class_idxs))
        boxes = Boxes(fields.pop("pred_boxes"))
        per_level.append(Instances(image_size, pred_boxes=boxes, scores=kept_scores, pred_classes=class_idxs, **fields))
    return merge_levels_with_nms(per_level, image_size, nms_thresh, max_detections)


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
    if torch.jit.is_tracing():
        # The count is a traced tensor here: min() would compare it once and freeze the tracing
        # image's choice (its candidate count when below topk), so clamp it in the graph.
        num_topk = torch.clamp(torch.as_tensor(candidates.size(0)), max=topk)
    else:
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
