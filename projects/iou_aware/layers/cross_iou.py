"""
Cross-IoU loss of LSNet ("Location-Sensitive Visual Recognition with Cross-IOU Loss",
https://arxiv.org/abs/2104.04899).

LSNet regresses each landmark as a vector (dx, dy) from an anchor point, represented by a
non-negative "cross" of 4 lengths in the channel order [y-, y+, x-, x+]: how far the
landmark lies up, down, left and right of the anchor point. Offsets and crosses share their
unit; LSNet divides pixels by 4 * stride.
"""

import math
from typing import Optional

import torch

from ..utils.choices import check_choice
from .box_geometry import aligned_box_iou
from .reduction import check_weight_and_reduction, weighted_reduce

__all__ = [
    "CROSS_IOU_MODES",
    "NUM_BOX_LANDMARKS",
    "KEYPOINT_OVERLAPS",
    "offsets_to_crosses",
    "crosses_to_offsets",
    "landmarks_to_boxes",
    "cross_iou_loss",
]

CROSS_IOU_MODES = ("box", "contour", "keypoint")
# The landmarks of "box", the centre (last) included: top, left, bottom, right, centre. "contour"
# and "keypoint" take any number L >= 2 (points + centre).
NUM_BOX_LANDMARKS = 5
# How "keypoint" mode pools the overlaps: per landmark and axis (the reference), or one overlap
# over all counted landmarks of the object (as "box" does).
KEYPOINT_OVERLAPS = ("axis", "object")


def offsets_to_crosses(offsets: torch.Tensor, alpha: float = 0.2) -> torch.Tensor:
    """
    Target crosses of landmark offsets. On each axis the offset's magnitude goes into the
    channel of its sign (0 counts as "+"), and the other channel gets ``alpha`` times it,
    e.g. (dx, dy) = (-2, 4) -> [0.8, 4, 2, 0.4] for alpha = 0.2.

    Args:
        offsets (Tensor[..., L, 2]): landmark offsets (dx, dy) from the anchor point.
        alpha (float): in [0, 1), so that :func:`crosses_to_offsets` recovers the offsets.

    Returns:
        Tensor[..., L, 4]: crosses [y-, y+, x-, x+], in the unit of ``offsets``.
    """
    if offsets.dim() == 0 or offsets.shape[-1] != 2:
        raise ValueError(f"offsets must have shape (..., L, 2), got {tuple(offsets.shape)}.")
    if not 0 <= alpha < 1:
        raise ValueError(f"alpha must be in [0, 1) so that crosses can be decoded back, got {alpha}.")
    signed = offsets.flip(-1)  # (dy, dx): the order of the cross's axes
    magnitude = signed.abs()
    negative = signed < 0
    minus = torch.where(negative, magnitude, alpha * magnitude)
    plus = torch.where(negative, alpha * magnitude, magnitude)
    return torch.stack([minus, plus], dim=-1).flatten(-2)


def crosses_to_offsets(crosses: torch.Tensor) -> torch.Tensor:
    """
    Decode crosses into offsets: on each axis the larger of the two channels wins, negated
    if it is the "-" one; on a tie "+" wins. The gradient flows to the winning channel only.

    Args:
        crosses (Tensor[..., L, 4]): crosses [y-, y+, x-, x+].

    Returns:
        Tensor[..., L, 2]: offsets (dx, dy), in the unit of ``crosses``.
    """
    if crosses.dim() == 0 or crosses.shape[-1] != 4:
        raise ValueError(f"crosses must have shape (..., L, 4), got {tuple(crosses.shape)}.")
    minus, plus = crosses.unflatten(-1, (2, 2)).unbind(-1)
    signed = torch.where(plus >= minus, plus, -minus)  # (dy, dx)
    return signed.flip(-1)


def cross_iou_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mode: str = "box",
    alpha: float = 0.2,
    visible: Optional[torch.Tensor] = None,
    weight: Optional[torch.Tensor] = None,
    reduction: str = "none",
    num_groups: int = 9,
    eps: float = 1e-6,
    target_boxes: Optional[torch.Tensor] = None,
    keypoint_overlap: str = "axis",
) -> torch.Tensor:
    """
    Cross-IoU loss between predicted crosses and ground-truth landmark offsets, whose
    crosses are :func:`offsets_to_crosses` ``(target, alpha)``. The overlap of two sets of
    crosses is ``(sum of channel-wise minima + eps) / (sum of channel-wise maxima + eps)``,
    which is 1 when both are all zero. Modes (landmark L - 1 is always the centre):

    * "box" (L = 5: top, left, bottom, right, centre): IoU is the overlap over all 20
      channels of the object; ``loss = 1 - IoU + penalty``, see below, on the box
      (x of left, y of top, x of right, y of bottom) of the decoded landmarks.
    * "contour" (L - 1 contour points, e.g. 36, then the centre): the contour points are dealt into
      ``num_groups`` interleaved groups, point i into group i % num_groups, and the centre
      joins group 0; IoU is the mean of the groups' overlaps; ``loss = 1 - IoU + penalty``
      on the extent (min / max x and y) of the decoded contour points.
    * "keypoint" (L - 1 keypoints, e.g. COCO's 17, then the centre): one overlap per landmark and axis,
      ``(min(p-, t-) + min(p+, t+) + eps) / (max(p-, t-) + max(p+, t+) + eps)``;
      ``loss = sum over the visible landmarks and both axes of (1 - overlap) / (2 L)``. The
      centre always counts as visible. Invisible landmarks affect neither the loss nor the
      gradients. No box penalty. With ``keypoint_overlap="object"``: one overlap over all the
      channels of the counted landmarks, ``loss = 1 - sum of minima / sum of maxima``, as
      "box" pools its 20 channels; each channel's gradient is then scaled by the object's
      size rather than by its own axis's length (see docs/models/lsnet.md, "Beyond the paper").

    The CIoU-style penalty is ``rho^2 / (c^2 + eps) + v^2 / (1 - IoU + v + eps)`` with rho
    the distance between the centres of the predicted box (from
    :func:`crosses_to_offsets` ``(pred)``) and the ground-truth box (``target_boxes``, by
    default the box of the ``target`` landmarks), c the
    diagonal of their enclosing box, ``v = 4 / pi^2 * (atan(w_gt / (h_gt + eps)) -
    atan(w / (h + eps)))^2`` and IoU the cross-IoU above. Unlike box_geometry's CIoU,
    ``v / (1 - IoU + v)`` is not detached. A predicted box whose landmarks are swapped
    (e.g. top below bottom) is inverted, and handled as in :func:`aligned_box_iou`: zero
    width / height for v, raw coordinates for rho and c. The loss is 0, with finite
    gradients, when ``pred`` equals the target crosses.

    The computation runs in float32 (float64 for float64 ``pred``), even under autocast.

    Args:
        pred (Tensor[N, L, 4]): predicted non-negative crosses [y-, y+, x-, x+]; L = 5 for
            "box", any L >= 2 for "contour" and "keypoint".
        target (Tensor[N, L, 2]): ground-truth offsets (dx, dy) from the anchor point, in
            the unit of ``pred``.
        mode (str): one of "box" | "contour" | "keypoint".
        alpha (float): see :func:`offsets_to_crosses`.
        visible (Tensor[N, L] or None): bool, which landmarks are labelled; required by
            "keypoint" and only accepted there.
        weight (Tensor[N] or None): per-object weight multiplied into the loss.
        reduction (str): "none" | "sum" | "mean". "mean" is the (weighted) sum divided by
            N, and a zero connected to the graph of ``pred`` when N == 0.
        num_groups (int): number of contour groups of "contour"; divides L - 1.
        eps (float): guard added to the numerator and denominator of the overlaps (in the
            unit of ``pred``), to c^2 (in squared units), to the box heights and to
            ``1 - IoU + v``.
        keypoint_overlap (str): "axis" | "object", how "keypoint" pools its overlaps (above).
        target_boxes (Tensor[N, 4] or None): XYXY ground-truth boxes of the penalty, in the
            unit and frame of ``target`` (offsets from the anchor point), e.g. the annotation
            box as in the reference; None: :func:`landmarks_to_boxes` ``(target, mode)``.
            Not used by "keypoint".

    Returns:
        Tensor[N] for reduction "none", else a scalar; float32 (float64 for float64 pred).
    """
    _check_inputs(pred, target, mode, visible, weight, reduction, num_groups)
    check_choice("keypoint_overlap", keypoint_overlap, KEYPOINT_OVERLAPS)
    if target_boxes is not None and target_boxes.shape != (pred.shape[0], 4):
        raise ValueError(f"target_boxes must have shape ({pred.shape[0]}, 4), got {tuple(target_boxes.shape)}.")
    if pred.dtype not in (torch.float32, torch.float64):
        pred = pred.float()
    with torch.autocast(device_type=pred.device.type, enabled=False):
        target = target.to(pred.dtype)
        target_crosses = offsets_to_crosses(target, alpha)
        inter = torch.minimum(pred, target_crosses)
        union = torch.maximum(pred, target_crosses)
        if mode == "keypoint":
            # (N, L, 2): one overlap per landmark and axis.
            axis_inter = inter.unflatten(-1, (2, 2)).sum(dim=-1)
            axis_union = union.unflatten(-1, (2, 2)).sum(dim=-1)
            axis_iou = _overlap(axis_inter, axis_union, eps)
            centre = torch.arange(pred.shape[1], device=pred.device) == pred.shape[1] - 1
            counted = visible | centre
            # torch.where, not a product with the mask, so that no value of an invisible
            # landmark (even inf or NaN) can reach the loss.
            if keypoint_overlap == "object":
                loss = 1 - _overlap(
                    torch.where(counted[..., None], axis_inter, 0).sum(dim=(1, 2)),
                    torch.where(counted[..., None], axis_union, 0).sum(dim=(1, 2)),
                    eps,
                )
            else:
                loss = torch.where(counted[..., None], 1 - axis_iou, 0).sum(dim=(1, 2))
                loss = loss / (2 * pred.shape[1])
        else:
            if mode == "box":
                iou = _overlap(inter.sum(dim=(1, 2)), union.sum(dim=(1, 2)), eps)
            else:
                # The centre, landmark L - 1, falls into group (L - 1) % num_groups = 0.
                group = torch.arange(pred.shape[1], device=pred.device) % num_groups
                iou = _overlap(
                    _group_sums(inter.sum(dim=-1), group, num_groups),
                    _group_sums(union.sum(dim=-1), group, num_groups),
                    eps,
                ).mean(dim=1)
            pred_box = landmarks_to_boxes(crosses_to_offsets(pred), mode)
            target_box = landmarks_to_boxes(target, mode) if target_boxes is None else target_boxes.to(pred.dtype)
            loss = 1 - iou + _box_penalty(pred_box, target_box, iou, eps)
        return weighted_reduce(loss, weight, reduction)


def _check_inputs(pred, target, mode, visible, weight, reduction, num_groups) -> None:
    check_choice("cross-IoU mode", mode, CROSS_IOU_MODES)
    num_landmarks = pred.shape[1] if pred.dim() == 3 else -1
    wanted = f"{NUM_BOX_LANDMARKS}" if mode == "box" else "L >= 2"
    if (
        pred.dim() != 3
        or pred.shape[2] != 4
        or (num_landmarks != NUM_BOX_LANDMARKS if mode == "box" else num_landmarks < 2)
        or target.shape != (pred.shape[0], num_landmarks, 2)
    ):
        raise ValueError(
            f"Cross-IoU mode {mode!r} needs pred (N, {wanted}, 4) crosses and target (N, same L, 2) "
            f"offsets, got {tuple(pred.shape)} and {tuple(target.shape)}."
        )
    num_objects = pred.shape[0]
    check_weight_and_reduction(weight, num_objects, reduction)
    if mode == "keypoint":
        if visible is None:
            raise ValueError("Cross-IoU mode 'keypoint' needs the visible (N, L) bool mask.")
        if visible.dtype != torch.bool or visible.shape != (num_objects, num_landmarks):
            raise ValueError(
                f"visible must be a bool tensor of shape ({num_objects}, {num_landmarks}), got "
                f"{visible.dtype} {tuple(visible.shape)}."
            )
    elif visible is not None:
        raise ValueError(f"visible is only used by mode 'keypoint', not {mode!r}.")
    if mode == "contour" and (num_groups < 1 or (num_landmarks - 1) % num_groups != 0):
        raise ValueError(f"num_groups must divide the {num_landmarks - 1} contour points, got {num_groups}.")


def _overlap(inter: torch.Tensor, union: torch.Tensor, eps: float) -> torch.Tensor:
    """Overlap from sums of minima and of maxima; 1 for 0 / 0."""
    return (inter + eps) / (union + eps)


def _group_sums(values: torch.Tensor, group: torch.Tensor, num_groups: int) -> torch.Tensor:
    """(N, L) per-landmark values -> (N, num_groups) sums over the landmarks of each group."""
    return values.new_zeros(values.shape[0], num_groups).index_add(1, group, values)


def landmarks_to_boxes(landmarks: torch.Tensor, mode: str) -> torch.Tensor:
    """
    The box of a set of landmarks: for "box" (top, left, bottom, right, centre) the x of left,
    y of top, x of right and y of bottom; otherwise the extent of all landmarks but the centre.

    Args:
        landmarks (Tensor[..., L, 2]): (x, y) landmarks, or offsets from one anchor point.
        mode (str): one of :data:`CROSS_IOU_MODES`.

    Returns:
        Tensor[..., 4]: XYXY boxes, in the unit and frame of ``landmarks``.
    """
    if mode == "box":
        return torch.stack(
            [landmarks[..., 1, 0], landmarks[..., 0, 1], landmarks[..., 3, 0], landmarks[..., 2, 1]], dim=-1
        )
    points = landmarks[..., :-1, :]
    return torch.cat([points.amin(dim=-2), points.amax(dim=-2)], dim=-1)


def _box_penalty(pred_box: torch.Tensor, target_box: torch.Tensor, iou: torch.Tensor, eps: float) -> torch.Tensor:
    """CIoU-style penalty ``rho^2 / c^2 + v^2 / (1 - IoU + v)`` of (N, 4) boxes -> (N,)."""
    # IoU - DIoU of box_geometry is rho^2 / (c^2 + eps); its CIoU cannot be reused, as it
    # detaches v / (1 - IoU + v) and uses the box IoU rather than the cross-IoU.
    distance = aligned_box_iou(pred_box, target_box, "iou", eps) - aligned_box_iou(pred_box, target_box, "diou", eps)
    pred_wh = (pred_box[:, 2:] - pred_box[:, :2]).clamp(min=0)
    target_wh = (target_box[:, 2:] - target_box[:, :2]).clamp(min=0)
    # h + eps rather than atan2(w, h): atan2 has a 0/0 gradient at w = h = 0.
    pred_aspect = torch.atan(pred_wh[:, 0] / (pred_wh[:, 1] + eps))
    target_aspect = torch.atan(target_wh[:, 0] / (target_wh[:, 1] + eps))
    v = (4 / math.pi**2) * (target_aspect - pred_aspect).square()
    return distance + v.square() / (1 - iou + v + eps)
