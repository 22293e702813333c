"""IoU-aware RetinaNet (Wu, Li, Wang): RetinaNet + an IoU prediction conv beside box regression.

Training adds L_IoU = BCE(iou_logit, IoU(decoded box, GT)) over positives, normalized like the
other RetinaNet losses. Inference ranks by S = p^alpha * IoU^(1 - alpha): S drives the score
threshold, the per-level top-k, NMS and the final top-100. The paper's upper bound (the true IoU
in place of the prediction) is an analysis, :mod:`iou_aware.evaluation.iou_upper_bound`, that
calls :meth:`IoUAwareRetinaNet.inference_single_image` with other IoUs.
"""

from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import cat
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.modeling.meta_arch.retinanet import RetinaNet, RetinaNetHead
from detectron2.structures import Boxes, ImageList, Instances
from detectron2.utils.events import get_event_storage
from fvcore.nn import sigmoid_focal_loss_jit
from torch import Tensor

from ...utils import check_choice
from ..box_regression import box_iou_loss_options, box_regression_loss, check_box_reg_loss_type
from ..dense_predictions import ema_update, transpose_dense_predictions
from ..iou_branch import SCORE_MODES, IoUPredictor, detection_confidence, iou_prediction_loss
from ..postprocessing import decode_dense_detections, inference_settings

__all__ = ["IoUAwareRetinaNet", "IoUAwareRetinaNetHead"]


class IoUAwareRetinaNetHead(RetinaNetHead):
    """RetinaNetHead plus ``iou_pred`` on the last box-tower feature. Its other parameters keep
    RetinaNetHead's names, so a stock RetinaNet checkpoint loads with only ``iou_pred`` missing."""

    @configurable
    def __init__(self, *, conv_dims: List[int], num_anchors: int, **kwargs):
        super().__init__(conv_dims=conv_dims, num_anchors=num_anchors, **kwargs)
        self.iou_pred = IoUPredictor(conv_dims[-1], num_anchors)

    def forward(self, features: List[Tensor]) -> Tuple[List[Tensor], List[Tensor], List[Tensor]]:
        """
        Returns per level: class logits (N, A*K, Hi, Wi), box deltas (N, A*4, Hi, Wi) and IoU
        logits (N, A, Hi, Wi).
        """
        logits, bbox_reg, box_towers = [], [], []
        for feature in features:
            logits.append(self.cls_score(self.cls_subnet(feature)))
            box_tower = self.bbox_subnet(feature)
            box_towers.append(box_tower)
            bbox_reg.append(self.bbox_pred(box_tower))
        return logits, bbox_reg, self.iou_pred(box_towers)


@META_ARCH_REGISTRY.register()
class IoUAwareRetinaNet(RetinaNet):
    """RetinaNet whose detections are ranked by the predicted localization quality.

    Reuses RetinaNet's anchors, matcher, box coder and focal loss; the box loss is any of
    BOX_REG_LOSS_TYPES (MODEL.RETINANET.BBOX_REG_LOSS_TYPE). Detections carry ``scores`` (S),
    ``cls_scores`` (p) and ``pred_ious`` besides the usual fields.
    """

    @configurable
    def __init__(
        self,
        *,
        iou_loss_weight: float = 1.0,
        detach_iou_target: bool = False,
        score_alpha: float = 0.5,
        score_mode: str = "power",
        iou_loss_options: Optional[Dict[str, float]] = None,
        **kwargs,
    ):
        """
        Args:
            iou_loss_weight: weight of L_IoU.
            detach_iou_target: stop L_IoU's gradient into the box regression through its target.
            score_alpha: alpha of S = p^alpha * IoU^(1 - alpha), in [0, 1].
            score_mode: "power" (S above) or "product" (p * IoU).
            iou_loss_options: focal coefficients of the IoU-family box losses.
            kwargs: see :class:`RetinaNet`.
        """
        super().__init__(**kwargs)
        check_box_reg_loss_type(self.box_reg_loss_type, "MODEL.RETINANET.BBOX_REG_LOSS_TYPE")
        if not 0.0 <= score_alpha <= 1.0:
            raise ValueError(f"MODEL.IOU_AWARE.SCORE_ALPHA must be in [0, 1], got {score_alpha}")
        check_choice("MODEL.IOU_AWARE.SCORE_MODE", score_mode, SCORE_MODES)
        self.iou_loss_weight = iou_loss_weight
        self.detach_iou_target = detach_iou_target
        self.score_alpha = score_alpha
        self.score_mode = score_mode
        self.iou_loss_options = dict(iou_loss_options or {})

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        backbone_shape = ret["backbone"].output_shape()
        ret["head"] = IoUAwareRetinaNetHead(cfg, [backbone_shape[f] for f in cfg.MODEL.RETINANET.IN_FEATURES])
        node = cfg.MODEL.IOU_AWARE
        ret.update(
            iou_loss_weight=node.LOSS_WEIGHT,
            detach_iou_target=node.DETACH_TARGET,
            score_alpha=node.SCORE_ALPHA,
            score_mode=node.SCORE_MODE,
            iou_loss_options=box_iou_loss_options(cfg),
        )
        return ret

    def _transpose(self, predictions):
        """Head outputs -> per level (N, Ri, K) class logits, (N, Ri, 4) deltas, (N, Ri, 1) IoU logits."""
        return transpose_dense_predictions(predictions, [self.num_classes, 4, 1])

    def forward_training(self, images, features, predictions, gt_instances):
        pred_logits, pred_deltas, pred_iou_logits = self._transpose(predictions)
        anchors = self.anchor_generator(features)
        gt_labels, gt_boxes = self.label_anchors(anchors, gt_instances)
        return self.losses(anchors, pred_logits, gt_labels, pred_deltas, gt_boxes, pred_iou_logits)

    def losses(self, anchors, pred_logits, gt_labels, pred_anchor_deltas, gt_boxes, pred_iou_logits):
        """
        Args:
            anchors: per level Boxes (Ri, 4). gt_labels: N tensors (R,), num_classes = background,
                -1 = ignore. gt_boxes: N tensors (R, 4) XYXY px.
            pred_logits, pred_anchor_deltas, pred_iou_logits: per level (N, Ri, K / 4 / 1).

        Returns:
            dict with "loss_cls", "loss_box_reg" and "loss_iou", each divided by the EMA of the
            number of positive anchors (Detectron2's RetinaNet normalizer).
        """
        num_images = len(gt_labels)
        gt_labels = torch.stack(gt_labels)  # (N, R)
        valid_mask = gt_labels >= 0
        pos_mask = valid_mask & (gt_labels != self.num_classes)
        num_pos_anchors = pos_mask.sum().item()
        get_event_storage().put_scalar("num_pos_anchors", num_pos_anchors / num_images)
        normalizer = ema_update(self, "loss_normalizer", max(num_pos_anchors, 1), 100)

        # The last one-hot column is background: no target for it.
        cls_target = F.one_hot(gt_labels[valid_mask], num_classes=self.num_classes + 1)[:, :-1]
        loss_cls = sigmoid_focal_loss_jit(
            cat(pred_logits, dim=1)[valid_mask],
            cls_target.to(pred_logits[0].dtype),
            alpha=self.focal_loss_alpha,
            gamma=self.focal_loss_gamma,
            reduction="sum",
        )

        all_anchors = Boxes.cat(anchors).tensor  # (R, 4)
        pos_anchors = all_anchors[None].expand(num_images, -1, -1)[pos_mask]  # (P, 4)
        pos_deltas = cat(pred_anchor_deltas, dim=1)[pos_mask]
        pos_gt_boxes = torch.stack(gt_boxes)[pos_mask]
        pos_pred_boxes = self.box2box_transform.apply_deltas(pos_deltas, pos_anchors)
        loss_box_reg = box_regression_loss(
            pos_deltas,
            pos_anchors,
            pos_gt_boxes,
            self.box2box_transform,
            loss_type=self.box_reg_loss_type,
            smooth_l1_beta=self.smooth_l1_beta,
            iou_loss_options=self.iou_loss_options,
            pred_boxes=pos_pred_boxes,
        )
        loss_iou = iou_prediction_loss(
            cat(pred_iou_logits, dim=1)[pos_mask][:, 0],
            pos_pred_boxes,
            pos_gt_boxes,
            detach_target=self.detach_iou_target,
        )
        return {
            "loss_cls": loss_cls / normalizer,
            "loss_box_reg": loss_box_reg / normalizer,
            "loss_iou": self.iou_loss_weight * loss_iou / normalizer,
        }

    def forward_inference(self, images: ImageList, features: List[Tensor], predictions: List[List[Tensor]]):
        pred_logits, pred_deltas, pred_iou_logits = self._transpose(predictions)
        anchors = self.anchor_generator(features)
        results = []
        for img_idx, image_size in enumerate(images.image_sizes):
            cls_probs = [x[img_idx].sigmoid() for x in pred_logits]
            deltas = [x[img_idx] for x in pred_deltas]
            iou_probs = [x[img_idx, :, 0].sigmoid() for x in pred_iou_logits]
            results.append(self.inference_single_image(anchors, cls_probs, deltas, image_size, iou_probs))
        return results

    def inference_single_image(
        self,
        anchors: List[Boxes],
        box_cls: List[Tensor],
        box_delta: List[Tensor],
        image_size: Tuple[int, int],
        iou_probs: Optional[List[Tensor]] = None,
    ) -> Instances:
        """
        Args:
            anchors: per level Boxes (Ri, 4). box_cls: per level (Ri, K) probabilities p.
            box_delta: per level (Ri, 4). iou_probs: per level (Ri,) IoU estimates (the
                predicted ones, or others for an analysis).
        Returns:
            Instances with pred_boxes, scores (S), pred_classes, cls_scores (p), pred_ious.
        """
        if iou_probs is None:
            raise ValueError("IoUAwareRetinaNet.inference_single_image needs iou_probs")

        def decode(level: int, anchor_idxs: Tensor, class_idxs: Tensor) -> Dict[str, Tensor]:
            boxes = self.box2box_transform.apply_deltas(
                box_delta[level][anchor_idxs], anchors[level].tensor[anchor_idxs]
            )
            return {
                "pred_boxes": boxes,
                "cls_scores": box_cls[level][anchor_idxs, class_idxs],
                "pred_ious": iou_probs[level][anchor_idxs],
            }

        scores = [detection_confidence(p, iou, self.score_alpha, self.score_mode) for p, iou in zip(box_cls, iou_probs)]
        return decode_dense_detections(
            scores,
            decode,
            image_size,
            **inference_settings(self),
        )
