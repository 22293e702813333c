"""Generalized Focal Loss V1 and V2 (Li et al.) as Detectron2 dense detectors.

One point per location, P3-P7. The class branch predicts a joint class-and-quality score trained
by Quality Focal Loss against the IoU of the decoded box; each box side (l, t, r, b, in strides)
is a distribution over bins 0..reg_max, decoded by its expectation and trained by Distribution
Focal Loss plus GIoU. V2 (``GFLV2``) multiplies the class probability by a quality predicted from
the shape of those distributions (DGQP). ATSS assigns points to GTs.
"""

from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import ShapeSpec, cat
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.modeling.meta_arch.dense_detector import DenseDetector
from detectron2.modeling.meta_arch.retinanet import RetinaNetHead
from detectron2.structures import Boxes, ImageList, Instances
from detectron2.utils.events import get_event_storage
from torch import Tensor, nn

from ...layers import (
    BOX_IOU_LOSS_KINDS,
    aligned_box_iou,
    box_iou_loss,
    distribution_focal_loss,
    group_norm_32,
    integral_distance,
    quality_focal_loss,
    quality_focal_loss_from_probs,
)
from ...utils import check_choice, reduce_mean
from ..assigners import ATSSAssigner, DenseAssigner
from ..box_regression import anchor_points_and_strides, box_iou_loss_options, boxes_to_distances, distances_to_boxes
from ..dense_predictions import transpose_dense_predictions
from ..iou_branch import IoUPredictor, detection_confidence, iou_prediction_loss
from ..postprocessing import decode_dense_detections, inference_settings
from ..requirements import ModelRequirements

__all__ = ["GFL", "GFLV2", "GFLHead", "DistributionGuidedQualityPredictor"]


class DistributionGuidedQualityPredictor(nn.Module):
    """GFL V2's DGQP: the top-k probabilities of each side's distribution and their mean
    (4 sides x (k + 1) numbers) -> FC -> ReLU -> FC -> sigmoid, one quality per location."""

    def __init__(
        self, reg_max: int, topk: int = 4, hidden_dim: int = 64, detach_input: bool = False, bias_init: float = 0.0
    ):
        """
        Args:
            detach_input: stop the quality loss's gradient at the distributions (an ablation; the
                reference does not detach, so the quality also trains the box branch).
            bias_init: initial bias of the last FC: the quality starts at sigmoid(bias_init),
                0.5 with the reference's 0 (an ablation: e.g. 4.6 starts it near 0.99).
        """
        super().__init__()
        self.reg_max = reg_max
        self.topk = topk
        self.detach_input = detach_input
        self.fc1 = nn.Linear(4 * (topk + 1), hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, 1)
        for layer in (self.fc1, self.fc2):
            nn.init.normal_(layer.weight, mean=0, std=0.01)
            nn.init.constant_(layer.bias, 0)
        nn.init.constant_(self.fc2.bias, bias_init)

    def forward(self, box_logits: List[Tensor]) -> List[Tensor]:
        """Per level (N, 4 * (reg_max + 1), Hi, Wi) side-distribution logits -> per level
        (N, 1, Hi, Wi) quality in (0, 1)."""
        n = box_logits[0].shape[0]
        sizes = [x.shape[-2:] for x in box_logits]
        # All levels in one batch, bins innermost: a few large ops instead of many small ones,
        # and softmax / top-k along the contiguous dimension (several times faster on CPU).
        flat = torch.cat([x.flatten(2) for x in box_logits], dim=2)  # (N, 4 * bins, L)
        if self.detach_input:
            flat = flat.detach()
        logits = flat.reshape(n, 4, self.reg_max + 1, -1).permute(0, 3, 1, 2)  # (N, L, 4, bins)
        top = F.softmax(logits, dim=-1).topk(self.topk, dim=-1).values  # (N, L, 4, k)
        statistics = torch.cat([top, top.mean(dim=-1, keepdim=True)], dim=-1).flatten(2)
        quality = self.fc2(F.relu(self.fc1(statistics))).sigmoid().permute(0, 2, 1)  # (N, 1, L)
        chunks = quality.split([h * w for h, w in sizes], dim=2)
        return [c.reshape(n, 1, h, w) for c, (h, w) in zip(chunks, sizes)]


class GFLHead(RetinaNetHead):
    """RetinaNet-style towers (GN by default) with one point per location; the box branch predicts
    4 * (reg_max + 1) distribution logits scaled by a learnable scalar per level; optional DGQP."""

    @configurable
    def __init__(
        self,
        *,
        input_shape: List[ShapeSpec],
        num_classes: int,
        conv_dims: List[int],
        norm: str = "GN",
        prior_prob: float = 0.01,
        reg_max: int = 16,
        use_dgqp: bool = False,
        dgqp_topk: int = 4,
        dgqp_hidden_dim: int = 64,
        dgqp_detach_input: bool = False,
        dgqp_bias_init: float = 0.0,
        use_iou_branch: bool = False,
    ):
        super().__init__(
            input_shape=input_shape,
            num_classes=num_classes,
            num_anchors=1,
            conv_dims=conv_dims,
            norm=group_norm_32 if norm == "GN" else norm,
            prior_prob=prior_prob,
        )
        self.reg_max = reg_max
        self.bbox_pred = nn.Conv2d(conv_dims[-1], 4 * (reg_max + 1), kernel_size=3, padding=1)
        nn.init.normal_(self.bbox_pred.weight, mean=0, std=0.01)
        nn.init.constant_(self.bbox_pred.bias, 0)
        self.scales = nn.Parameter(torch.ones(len(input_shape)))
        self.dgqp = (
            DistributionGuidedQualityPredictor(reg_max, dgqp_topk, dgqp_hidden_dim, dgqp_detach_input, dgqp_bias_init)
            if use_dgqp
            else None
        )
        self.iou_pred = IoUPredictor(conv_dims[-1], 1) if use_iou_branch else None

    @classmethod
    def from_config(cls, cfg, input_shape: List[ShapeSpec]):
        node = cfg.MODEL.GFL
        return {
            "input_shape": input_shape,
            "num_classes": node.NUM_CLASSES,
            "conv_dims": [input_shape[0].channels] * node.NUM_CONVS,
            "norm": node.NORM,
            "prior_prob": node.PRIOR_PROB,
            "reg_max": node.REG_MAX,
            "use_dgqp": cfg.MODEL.META_ARCHITECTURE == "GFLV2",
            "dgqp_topk": node.DGQP_TOPK,
            "dgqp_hidden_dim": node.DGQP_HIDDEN_DIM,
            "dgqp_detach_input": node.DGQP_DETACH_INPUT,
            "dgqp_bias_init": node.DGQP_BIAS_INIT,
            "use_iou_branch": cfg.MODEL.IOU_AWARE.ENABLED,
        }

    def forward(self, features: List[Tensor]):
        """
        Returns per level: class logits (N, K, Hi, Wi), side-distribution logits
        (N, 4 * (reg_max + 1), Hi, Wi), then with DGQP the quality (N, 1, Hi, Wi) and with the
        IoU branch the IoU logits (N, 1, Hi, Wi).
        """
        logits, box_logits, box_towers = [], [], []
        for level, feature in enumerate(features):
            logits.append(self.cls_score(self.cls_subnet(feature)))
            box_tower = self.bbox_subnet(feature)
            box_towers.append(box_tower)
            box_logits.append(self.scales[level] * self.bbox_pred(box_tower))
        outputs = [logits, box_logits]
        if self.dgqp is not None:
            outputs.append(self.dgqp(box_logits))
        if self.iou_pred is not None:
            outputs.append(self.iou_pred(box_towers))
        return tuple(outputs)


@META_ARCH_REGISTRY.register()
class GFL(DenseDetector):
    """Generalized Focal Loss V1: QFL + DFL + GIoU with ATSS assignment (``GFLV2`` adds DGQP)."""

    @configurable
    def __init__(
        self,
        *,
        backbone,
        head: GFLHead,
        head_in_features: List[str],
        anchor_generator: DefaultAnchorGenerator,
        assigner: DenseAssigner,
        num_classes: int,
        reg_max: int = 16,
        qfl_beta: float = 2.0,
        qfl_weight: float = 1.0,
        dfl_weight: float = 0.25,
        box_loss_type: str = "giou",
        box_loss_weight: float = 2.0,
        iou_loss_options: Optional[Dict[str, float]] = None,
        test_score_thresh: float = 0.05,
        test_topk_candidates: int = 1000,
        test_nms_thresh: float = 0.6,
        max_detections_per_image: int = 100,
        iou_loss_weight: float = 1.0,
        detach_iou_target: bool = False,
        score_alpha: float = 0.5,
        score_mode: str = "power",
        pixel_mean,
        pixel_std,
    ):
        """
        Args:
            anchor_generator: one square anchor of side anchor_scale * stride per location; its
                centre is the point, its box is used only by the assigner.
            assigner: a DenseAssigner (ATSS).
            reg_max: bins per side are 0..reg_max (in strides).
            qfl_beta, qfl_weight, dfl_weight, box_loss_type, box_loss_weight: the losses.
            iou_loss_options: extra keyword arguments of ``box_iou_loss`` (the focal coefficients of
                the focal_* kinds, MODEL.BOX_IOU_LOSS).
            iou_loss_weight, detach_iou_target, score_alpha, score_mode: the IoU branch of
                :mod:`iou_aware.modeling.iou_branch`, used when the head has one.
            Other arguments: as Detectron2's RetinaNet.
        """
        super().__init__(backbone, head, head_in_features, pixel_mean=pixel_mean, pixel_std=pixel_std)
        check_choice("MODEL.GFL.BOX_LOSS_TYPE", box_loss_type, BOX_IOU_LOSS_KINDS)
        self.anchor_generator = anchor_generator
        self.assigner = assigner
        self.num_classes = num_classes
        self.reg_max = reg_max
        self.qfl_beta = qfl_beta
        self.qfl_weight = qfl_weight
        self.dfl_weight = dfl_weight
        self.box_loss_type = box_loss_type
        self.box_loss_weight = box_loss_weight
        self.iou_loss_options = dict(iou_loss_options or {})
        self.test_score_thresh = test_score_thresh
        self.test_topk_candidates = test_topk_candidates
        self.test_nms_thresh = test_nms_thresh
        self.max_detections_per_image = max_detections_per_image
        self.iou_loss_weight = iou_loss_weight
        self.detach_iou_target = detach_iou_target
        self.score_alpha = score_alpha
        self.score_mode = score_mode

    @classmethod
    def from_config(cls, cfg):
        node = cfg.MODEL.GFL
        backbone = build_backbone(cfg)
        shapes = [backbone.output_shape()[f] for f in node.IN_FEATURES]
        strides = [s.stride for s in shapes]
        return {
            "backbone": backbone,
            "head": GFLHead(cfg, shapes),
            "head_in_features": node.IN_FEATURES,
            "anchor_generator": DefaultAnchorGenerator(
                sizes=[[node.ANCHOR_SCALE * s] for s in strides], aspect_ratios=[1.0], strides=strides
            ),
            "assigner": ATSSAssigner(topk=node.ATSS_TOPK),
            "num_classes": node.NUM_CLASSES,
            "reg_max": node.REG_MAX,
            "qfl_beta": node.QFL_BETA,
            "qfl_weight": node.QFL_WEIGHT,
            "dfl_weight": node.DFL_WEIGHT,
            "box_loss_type": node.BOX_LOSS_TYPE,
            "iou_loss_options": box_iou_loss_options(cfg),
            "box_loss_weight": node.BOX_LOSS_WEIGHT,
            "test_score_thresh": node.SCORE_THRESH_TEST,
            "test_topk_candidates": node.TOPK_CANDIDATES_TEST,
            "test_nms_thresh": node.NMS_THRESH_TEST,
            "max_detections_per_image": cfg.TEST.DETECTIONS_PER_IMAGE,
            "iou_loss_weight": cfg.MODEL.IOU_AWARE.LOSS_WEIGHT,
            "detach_iou_target": cfg.MODEL.IOU_AWARE.DETACH_TARGET,
            "score_alpha": cfg.MODEL.IOU_AWARE.SCORE_ALPHA,
            "score_mode": cfg.MODEL.IOU_AWARE.SCORE_MODE,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
        }

    @classmethod
    def requirements(cls, cfg) -> ModelRequirements:
        return ModelRequirements(class_count_key="MODEL.GFL.NUM_CLASSES")

    def _transpose(self, predictions) -> Dict[str, Optional[List[Tensor]]]:
        """Head outputs -> per level (N, Ri, C) tensors under "logits", "box_logits", "quality"
        (DGQP) and "iou_logits" (IoU branch); None for a branch the head does not have."""
        names = ["logits", "box_logits"]
        dims = [self.num_classes, 4 * (self.reg_max + 1)]
        for name, module in (("quality", self.head.dgqp), ("iou_logits", self.head.iou_pred)):
            if module is not None:
                names.append(name)
                dims.append(1)
        outputs = dict.fromkeys(["quality", "iou_logits"])
        outputs.update(zip(names, transpose_dense_predictions(predictions, dims)))
        return outputs

    def forward_training(self, images, features, predictions, gt_instances):
        pred = self._transpose(predictions)
        anchors = self.anchor_generator(features)
        gt_labels, gt_boxes = self.label_anchors(anchors, gt_instances)
        return self.losses(anchors, pred, gt_labels, gt_boxes)

    @torch.no_grad()
    def label_anchors(self, anchors: List[Boxes], gt_instances: List[Instances]):
        """
        Returns:
            gt_labels: N tensors (R,) with the class of each point's GT, num_classes for background.
            gt_boxes: N tensors (R, 4), the assigned GT box (undefined for background).
        """
        anchors_per_level = [a.tensor for a in anchors]
        gt_labels, gt_boxes = [], []
        for instances in gt_instances:
            matched = self.assigner(anchors_per_level, instances.gt_boxes.tensor)
            positive = matched >= 0
            labels = torch.full_like(matched, self.num_classes)
            boxes = torch.zeros(len(matched), 4, device=matched.device)
            labels[positive] = instances.gt_classes[matched[positive]]
            boxes[positive] = instances.gt_boxes.tensor[matched[positive]]
            gt_labels.append(labels)
            gt_boxes.append(boxes)
        return gt_labels, gt_boxes

    def losses(self, anchors, pred, gt_labels, gt_boxes):
        """
        QFL on every point, normalized by the number of positives (averaged over workers, >= 1);
        box (GIoU) and DFL on positives, weighted by the detached max class score of each positive
        and normalized by the sum of those weights (averaged over workers, >= 1). With the IoU
        branch, also loss_iou on positives, normalized like QFL.

        Args:
            anchors: per level Boxes (Ri, 4). pred: see :meth:`_transpose`.
            gt_labels, gt_boxes: see :meth:`label_anchors`.
        """
        pred_logits, pred_box_logits, pred_quality = pred["logits"], pred["box_logits"], pred["quality"]
        num_images = len(gt_labels)
        gt_labels = torch.stack(gt_labels).flatten()  # (N * R,)
        pos_mask = gt_labels != self.num_classes
        num_pos = pos_mask.sum()
        get_event_storage().put_scalar("num_pos_anchors", num_pos.item() / num_images)
        num_pos_avg = reduce_mean(num_pos.float()).clamp(min=1.0)

        points, strides = anchor_points_and_strides(anchors, self.anchor_generator.strides)
        points = points.repeat(num_images, 1)[pos_mask]
        strides = strides.repeat(num_images)[pos_mask]
        logits = cat(pred_logits, dim=1).flatten(0, 1)  # (N * R, K)
        box_logits = cat(pred_box_logits, dim=1).flatten(0, 1)[pos_mask]  # (P, 4 * (reg_max + 1))
        pos_gt_boxes = torch.stack(gt_boxes).flatten(0, 1)[pos_mask]

        pred_boxes = distances_to_boxes(points, integral_distance(box_logits) * strides[:, None])
        quality_target = torch.zeros(len(logits), device=logits.device)
        quality_target[pos_mask] = aligned_box_iou(pred_boxes.detach(), pos_gt_boxes)

        if pred_quality is None:
            joint_scores = logits.detach().sigmoid()
            loss_qfl = quality_focal_loss(logits, gt_labels, quality_target, beta=self.qfl_beta, reduction="sum")
        else:
            probs = logits.sigmoid() * cat(pred_quality, dim=1).flatten(0, 1)
            joint_scores = probs.detach()
            loss_qfl = quality_focal_loss_from_probs(
                probs, gt_labels, quality_target, beta=self.qfl_beta, reduction="sum"
            )

        weights = joint_scores[pos_mask].max(dim=1).values
        weight_sum = reduce_mean(weights.sum()).clamp(min=1.0)
        loss_box = box_iou_loss(
            pred_boxes, pos_gt_boxes, kind=self.box_loss_type, weight=weights, reduction="sum", **self.iou_loss_options
        )
        side_targets = boxes_to_distances(points, pos_gt_boxes) / strides[:, None]
        loss_dfl = distribution_focal_loss(
            box_logits.reshape(-1, self.reg_max + 1),
            side_targets.reshape(-1),
            weight=weights[:, None].expand(-1, 4).reshape(-1),
            reduction="sum",
        )
        losses = {
            "loss_qfl": self.qfl_weight * loss_qfl / num_pos_avg,
            "loss_box_reg": self.box_loss_weight * loss_box / weight_sum,
            "loss_dfl": self.dfl_weight * loss_dfl / 4.0 / weight_sum,  # mean over the 4 sides
        }
        if pred["iou_logits"] is not None:
            iou_logits = cat(pred["iou_logits"], dim=1).flatten(0, 1)[pos_mask][:, 0]
            loss_iou = iou_prediction_loss(iou_logits, pred_boxes, pos_gt_boxes, self.detach_iou_target)
            losses["loss_iou"] = self.iou_loss_weight * loss_iou / num_pos_avg
        return losses

    def forward_inference(self, images: ImageList, features: List[Tensor], predictions: List[List[Tensor]]):
        pred = self._transpose(predictions)
        anchors = self.anchor_generator(features)
        strides = self.anchor_generator.strides
        results = []
        for img_idx, image_size in enumerate(images.image_sizes):
            level_scores = []
            for level in range(len(anchors)):
                scores = pred["logits"][level][img_idx].sigmoid()
                if pred["quality"] is not None:
                    scores = scores * pred["quality"][level][img_idx]
                if pred["iou_logits"] is not None:
                    iou_probs = pred["iou_logits"][level][img_idx, :, 0].sigmoid()
                    scores = detection_confidence(scores, iou_probs, self.score_alpha, self.score_mode)
                level_scores.append(scores)

            def decode(level: int, point_idxs: Tensor, class_idxs: Tensor, img_idx=img_idx) -> Dict[str, Tensor]:
                distances = integral_distance(pred["box_logits"][level][img_idx][point_idxs]) * strides[level]
                return {"pred_boxes": distances_to_boxes(anchors[level].get_centers()[point_idxs], distances)}

            results.append(
                decode_dense_detections(
                    level_scores,
                    decode,
                    image_size,
                    **inference_settings(self),
                )
            )
        return results


@META_ARCH_REGISTRY.register()
class GFLV2(GFL):
    """Generalized Focal Loss V2: GFL whose head has the Distribution-Guided Quality Predictor
    (selected by this meta-architecture name; the same GFLHead module)."""
