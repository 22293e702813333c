"""
Label assignment of dense (one-stage) heads: which ground-truth box, if any, each anchor
(or anchor point) learns.
"""

import abc
import math
from typing import List, Optional, Sequence

import torch

from ..layers import pairwise_box_iou

__all__ = ["DenseAssigner", "ATSSAssigner", "CentrePointAssigner"]


class DenseAssigner(abc.ABC):
    """
    Interface of the assigners of dense heads, for one image.

    Anchors are XYXY boxes in pixels: the anchors of an anchor-based head, or for an
    anchor-point head (e.g. GFL) a square of side ``anchor_scale * stride`` centred on each
    point.
    """

    @torch.no_grad()
    def __call__(
        self,
        anchors_per_level: List[torch.Tensor],
        gt_boxes: torch.Tensor,
        valid: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """
        Args:
            anchors_per_level (list[Tensor[Ri, 4]]): XYXY anchors in pixels, one tensor per
                feature level, fine to coarse.
            gt_boxes (Tensor[G, 4]): XYXY ground-truth boxes in pixels.
            valid (Tensor[R] bool, optional): the anchors that may be assigned (e.g. not in the
                padding of a batch). The others are never candidates: the assignment is the one of
                the valid anchors alone, as if the others did not exist. None: all are valid.

        Returns:
            Tensor[R] (R = sum of the Ri, levels concatenated in order): int64 index into
            ``gt_boxes`` of the GT assigned to each anchor, -1 for a negative (always for an
            anchor that is not valid).
        """
        anchors = torch.cat(anchors_per_level)
        if gt_boxes.shape[0] == 0 or anchors.shape[0] == 0:
            return torch.full((anchors.shape[0],), -1, dtype=torch.int64, device=anchors.device)
        if valid is None:
            return self.assign(anchors_per_level, anchors.float(), gt_boxes.float())
        if valid.shape != anchors.shape[:1]:
            raise ValueError(f"valid has shape {tuple(valid.shape)}, the anchors are {anchors.shape[0]}.")
        valid = valid.to(device=anchors.device, dtype=torch.bool)
        matched = self.assign(anchors_per_level, anchors.float(), gt_boxes.float(), valid=valid)
        return matched.masked_fill(~valid, -1)

    @abc.abstractmethod
    def assign(
        self,
        anchors_per_level: List[torch.Tensor],
        anchors: torch.Tensor,
        gt_boxes: torch.Tensor,
        valid: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """:meth:`__call__` for at least one anchor and one GT; ``anchors`` (R, 4) float32 is
        ``anchors_per_level`` concatenated; ``valid`` (R,) bool or None (all valid)."""


class ATSSAssigner(DenseAssigner):
    """
    Adaptive Training Sample Selection (Zhang et al., https://arxiv.org/abs/1912.02424), as
    used by GFL. For each GT:

    1. candidates: on each level, the ``topk`` anchors whose centres are closest to the GT
       centre (all of the level's anchors if it has fewer);
    2. IoU threshold: mean + standard deviation (unbiased, as torch.std) of the IoUs of the
       GT with its candidates;
    3. positives: the candidates with IoU >= threshold whose centre is inside the GT, more
       than 0.01 px from each of its sides.

    An anchor positive for several GTs is assigned to the one it has the largest IoU with.
    With a ``valid`` mask, only valid anchors are candidates and count in the threshold (on a
    level with fewer than ``topk`` valid anchors, all of them), as ATSS run on the valid anchors
    alone.
    """

    def __init__(self, topk: int = 9):
        """
        Args:
            topk (int): number of candidates per level and GT.
        """
        self.topk = topk

    def assign(
        self,
        anchors_per_level: List[torch.Tensor],
        anchors: torch.Tensor,
        gt_boxes: torch.Tensor,
        valid: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        anchor_centres = (anchors[:, :2] + anchors[:, 2:]) / 2
        gt_centres = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2
        distances = (anchor_centres[:, None, :] - gt_centres[None, :, :]).norm(dim=2)  # (R, G)
        if valid is not None:
            # Invalid anchors rank after every valid one of their level; dropped below.
            distances = distances.masked_fill(~valid[:, None], float("inf"))

        candidates = []  # (ki, G) anchor indices per level, ki = min(topk, Ri)
        start = 0
        for level_anchors in anchors_per_level:
            end = start + level_anchors.shape[0]
            k = min(self.topk, end - start)
            _, idx = distances[start:end].topk(k, dim=0, largest=False)
            candidates.append(idx + start)
            start = end
        candidates = torch.cat(candidates)  # (K, G)

        ious = pairwise_box_iou(anchors, gt_boxes)  # (R, G)
        candidate_ious = ious.gather(0, candidates)
        if valid is None:
            # The unbiased std of a single value is NaN; let that lone candidate set the threshold.
            if candidates.shape[0] > 1:
                threshold = candidate_ious.mean(dim=0) + candidate_ious.std(dim=0)
            else:
                threshold = candidate_ious[0]
        else:
            threshold = self._masked_threshold(candidate_ious, valid[candidates])

        # Distances (K, G, 4) from each candidate's centre to the left, top, right, bottom
        # sides of its GT; positive inside the GT.
        centres = anchor_centres[candidates]
        side_distances = torch.cat([centres - gt_boxes[None, :, :2], gt_boxes[None, :, 2:] - centres], dim=2)
        is_pos = (candidate_ious >= threshold) & (side_distances.min(dim=2).values > 0.01)
        if valid is not None:
            is_pos &= valid[candidates]

        # IoU with each GT an anchor is positive for, -inf for the others. The candidates of
        # one GT are distinct anchors, so the scatter writes each entry at most once.
        pos_ious = torch.full_like(ious, float("-inf"))
        pos_ious.scatter_(0, candidates, candidate_ious.masked_fill(~is_pos, float("-inf")))
        best_iou, best_gt = pos_ious.max(dim=1)
        return best_gt.masked_fill(best_iou == float("-inf"), -1)

    @staticmethod
    def _masked_threshold(candidate_ious: torch.Tensor, candidate_valid: torch.Tensor) -> torch.Tensor:
        """(G,) mean + unbiased std of each GT's (K, G) candidate IoUs over its valid candidates;
        a lone valid candidate sets the threshold alone (its std is undefined)."""
        count = candidate_valid.sum(dim=0)  # (G,)
        weights = candidate_valid.to(candidate_ious.dtype)
        mean = (candidate_ious * weights).sum(dim=0) / count.clamp(min=1)
        variance = ((candidate_ious - mean) ** 2 * weights).sum(dim=0) / (count - 1).clamp(min=1)
        return mean + variance.sqrt() * (count > 1)


class CentrePointAssigner(DenseAssigner):
    """
    LSNet's (and RepPoints') assignment of the initial stage: each GT goes to one level, the one
    whose stride is 2^floor(log2(sqrt(w * h) / scale)) (clamped to the available levels), and
    there to the ``pos_num`` points nearest to its box centre, distances measured in units of
    the GT's width and height. A point chosen by several GTs takes the nearest one.

    Only the centres of the anchors are used (the points). With a ``valid`` mask, the GT's
    ``pos_num`` nearest valid points of its level are chosen.
    """

    def __init__(self, strides: Sequence[int], scale: float = 4.0, pos_num: int = 1):
        """
        Args:
            strides: stride of each level, fine to coarse, powers of 2.
            scale: object size, in strides of its level.
            pos_num: positives per GT.
        """
        self.level_exponents = torch.tensor([math.log2(s) for s in strides])
        self.scale = scale
        self.pos_num = pos_num

    def assign(
        self,
        anchors_per_level: List[torch.Tensor],
        anchors: torch.Tensor,
        gt_boxes: torch.Tensor,
        valid: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        if len(anchors_per_level) != len(self.level_exponents):
            raise ValueError(f"Built for {len(self.level_exponents)} levels, got {len(anchors_per_level)}.")
        points = (anchors[:, :2] + anchors[:, 2:]) / 2
        gt_centres = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2
        gt_sizes = (gt_boxes[:, 2:] - gt_boxes[:, :2]).clamp(min=1e-6)
        exponents = self.level_exponents.to(points.device)
        gt_exponent = (torch.log2(gt_sizes / self.scale).sum(dim=1) / 2).floor()
        gt_exponent = gt_exponent.clamp(exponents.min(), exponents.max())
        gt_level = (gt_exponent[:, None] - exponents[None, :]).abs().argmin(dim=1)  # (G,)
        point_level = torch.cat(
            [torch.full((len(a),), i, device=points.device) for i, a in enumerate(anchors_per_level)]
        )

        distances = ((points[:, None, :] - gt_centres[None]) / gt_sizes[None]).norm(dim=2)  # (R, G)
        distances = distances.masked_fill(point_level[:, None] != gt_level[None, :], float("inf"))
        if valid is not None:
            distances = distances.masked_fill(~valid[:, None], float("inf"))
        k = min(self.pos_num, len(points))
        nearest_dist, nearest = distances.topk(k, dim=0, largest=False)  # (k, G)
        chosen = torch.full_like(distances, float("inf"))
        chosen.scatter_(0, nearest, nearest_dist)
        best_dist, best_gt = chosen.min(dim=1)
        return best_gt.masked_fill(best_dist == float("inf"), -1)
