"""
IoU-family overlap measures (IoU, GIoU, DIoU, CIoU) between axis-aligned boxes.

Boxes are ``(x1, y1, x2, y2)`` in absolute pixels and ``width = x2 - x1`` (no "+1").
This module is the single implementation of these measures in the package; losses
and matchers build on it.
"""

import math

import torch

from ..utils.choices import check_choice

__all__ = ["pairwise_box_iou", "aligned_box_iou"]

BOX_IOU_KINDS = ("iou", "giou", "diou", "ciou")


def pairwise_box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor, kind: str = "iou", eps: float = 1e-7) -> torch.Tensor:
    """
    IoU-family measure between every box of ``boxes1`` and every box of ``boxes2``.

    Args:
        boxes1 (Tensor[N, 4]): XYXY boxes in pixels.
        boxes2 (Tensor[M, 4]): XYXY boxes in pixels, treated as ground truth by "ciou".
        kind (str): one of "iou" | "giou" | "diou" | "ciou". See :func:`aligned_box_iou`.
        eps (float): guard added to denominators (in squared pixels, or pixels for the
            height in CIoU's aspect term).

    Returns:
        Tensor[N, M]: float32 (float64 if an input is float64), unitless.
    """
    _check_boxes(boxes1, "boxes1")
    _check_boxes(boxes2, "boxes2")
    return _box_iou(boxes1[:, None, :], boxes2[None, :, :], kind, eps)


def aligned_box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor, kind: str = "iou", eps: float = 1e-7) -> torch.Tensor:
    """
    IoU-family measure between ``boxes1[i]`` and ``boxes2[i]``.

    * "iou":  inter / union, in [0, 1].
    * "giou": IoU - (C - union) / C with C the area of the smallest enclosing box,
      in [-1, 1] (https://arxiv.org/abs/1902.09630).
    * "diou": IoU - rho^2 / c^2 with rho the distance between the box centres and c the
      diagonal of the smallest enclosing box, in [-1, 1] (https://arxiv.org/abs/1911.08287).
    * "ciou": DIoU - alpha * v with v = 4 / pi^2 * (atan(w2 / h2) - atan(w1 / h1))^2 and
      alpha = v / (1 - IoU + v), in [-2, 1]. ``boxes2`` is the ground truth (w2, h2), as in
      torchvision's ``complete_box_iou_loss``; v is symmetric, so the values do not depend
      on this choice. As in the paper and torchvision, alpha is a constant for autograd.

    Inverted boxes (x2 < x1 or y2 < y1) count as having zero width / height in areas,
    intersection and aspect ratio, but centres and the enclosing box use the raw
    coordinates, so that DIoU / CIoU still pull an inverted box's centre towards the
    other box; they can then fall below -1. The result is finite, and so is its
    gradient, for zero-area, inverted and very large boxes.
    The computation runs in float32 (float64 for float64 inputs), even under autocast.

    Args:
        boxes1 (Tensor[N, 4]): XYXY boxes in pixels, e.g. predictions.
        boxes2 (Tensor[N, 4]): XYXY boxes in pixels, the ground truth.
        kind (str): one of "iou" | "giou" | "diou" | "ciou".
        eps (float): guard added to denominators (in squared pixels, or pixels for the
            height in CIoU's aspect term).

    Returns:
        Tensor[N]: float32 (float64 if an input is float64), unitless.
    """
    _check_boxes(boxes1, "boxes1")
    _check_boxes(boxes2, "boxes2")
    if boxes1.shape[0] != boxes2.shape[0]:
        raise ValueError(
            "aligned_box_iou needs as many boxes in boxes1 as in boxes2, got "
            f"{tuple(boxes1.shape)} and {tuple(boxes2.shape)}."
        )
    return _box_iou(boxes1, boxes2, kind, eps)


def _check_boxes(boxes: torch.Tensor, name: str) -> None:
    if boxes.dim() != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"{name} must have shape (N, 4), got {tuple(boxes.shape)}.")


def _box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor, kind: str, eps: float) -> torch.Tensor:
    """
    The IoU-family measure of broadcastable XYXY boxes (..., 4) -> (...).
    """
    check_choice("IoU kind", kind, BOX_IOU_KINDS)
    # Areas of large boxes overflow half precision and lose all precision in bfloat16.
    if boxes1.dtype not in (torch.float32, torch.float64):
        boxes1 = boxes1.float()
    if boxes2.dtype not in (torch.float32, torch.float64):
        boxes2 = boxes2.float()
    with torch.autocast(device_type=boxes1.device.type, enabled=False):
        lt1, rb1 = boxes1[..., :2], boxes1[..., 2:]
        lt2, rb2 = boxes2[..., :2], boxes2[..., 2:]
        signed_wh1 = rb1 - lt1
        signed_wh2 = rb2 - lt2
        wh1 = signed_wh1.clamp(min=0)
        wh2 = signed_wh2.clamp(min=0)
        # Negative where the boxes are apart: minus the gap between them.
        signed_inter_wh = torch.min(rb1, rb2) - torch.max(lt1, lt2)
        inter_wh = signed_inter_wh.clamp(min=0)
        inter = inter_wh[..., 0] * inter_wh[..., 1]
        union = wh1[..., 0] * wh1[..., 1] + wh2[..., 0] * wh2[..., 1] - inter
        iou = inter / (union + eps)
        if kind == "iou":
            return iou

        # max(rb1, rb2) - min(lt1, lt2), since min + max = sum; the backward of min / max is
        # several times slower than that of add / sub.
        enclose_wh = (signed_wh1 + signed_wh2 - signed_inter_wh).clamp(min=0)
        if kind == "giou":
            enclose_area = enclose_wh[..., 0] * enclose_wh[..., 1]
            return iou - (enclose_area - union) / (enclose_area + eps)

        # Twice the centre offset, so that rho^2 = |centre_delta|^2 / 4.
        centre_delta = (lt1 + rb1) - (lt2 + rb2)
        diag_sq = enclose_wh.square().sum(dim=-1) + eps
        diou = iou - 0.25 * centre_delta.square().sum(dim=-1) / diag_sq
        if kind == "diou":
            return diou

        # h + eps rather than atan2(w, h): atan2 has a 0/0 gradient at w = h = 0.
        aspect1 = torch.atan(wh1[..., 0] / (wh1[..., 1] + eps))
        aspect2 = torch.atan(wh2[..., 0] / (wh2[..., 1] + eps))
        v = (4 / math.pi**2) * (aspect2 - aspect1).square()
        with torch.no_grad():
            alpha = v / (1 - iou + v + eps)
        return diou - alpha * v
