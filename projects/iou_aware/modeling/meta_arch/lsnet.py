"""LSNet (Duan et al., "Location-Sensitive Visual Recognition with Cross-IOU Loss") as a Detectron2
dense detector, for boxes, instance masks and pose.

One anchor point per location, P3-P7. The :class:`LandmarkHead` predicts each landmark set of the
task (``MODEL.LSNET.TASK``) as crosses, initial and refined. The initial stage is trained on one
point per GT (the nearest to its centre on the level of its size); the refinement stage and the
classes on the points that ATSS picks among the boxes of the initial landmarks. Both stages use the
cross-IoU loss on vectors in units of ``point_base_scale * stride``; classes use the focal loss.
Three ablations reach beyond the reference (``MODEL.LSNET.CLASS_LOSS``, ``REFINE_ASSIGN_ON``,
``REFINE_LOSS_WEIGHTING``): GFL's quality focal loss for the classes, ATSS on fixed anchor squares
instead of the initial boxes, and GFL's weighting of each positive's regression by its score.

Inference decodes the refined landmarks: boxes (from the box set, or the contour's extent), masks
(the filled contour polygon, at the output resolution) and keypoints (scored with the detection's
score).
"""

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import cat
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.modeling.meta_arch.dense_detector import DenseDetector
from detectron2.structures import ImageList, Instances
from detectron2.utils.events import get_event_storage
from fvcore.nn import sigmoid_focal_loss_jit
from torch import Tensor

from ...layers import aligned_box_iou, cross_iou_loss, crosses_to_offsets, landmarks_to_boxes, quality_focal_loss
from ...structures import add_landmark_targets
from ...utils import check_choice, reduce_mean
from ..assigners import ATSSAssigner, CentrePointAssigner, DenseAssigner
from ..box_regression import anchor_points_and_strides
from ..dense_predictions import transpose_dense_predictions
from ..landmark_head import LandmarkHead
from ..postprocessing import decode_dense_detections, inference_settings, rasterize_polygons
from ..requirements import ModelRequirements

__all__ = ["LSNet", "LSNetTargets", "CLASS_LOSSES", "REFINE_ASSIGN_TARGETS", "REFINE_LOSS_WEIGHTINGS"]

# MODEL.LSNET.CLASS_LOSS and MODEL.LSNET.REFINE_ASSIGN_ON; the first of each is the reference's.
CLASS_LOSSES = ("focal", "quality_focal")
REFINE_ASSIGN_TARGETS = ("initial_boxes", "anchors")
REFINE_LOSS_WEIGHTINGS = ("uniform", "score")


@dataclass(frozen=True)
class LSNetTargets:
    """A batch's head outputs and the positives of both stages, from :meth:`LSNet.assign` for
    :meth:`LSNet.losses`. N images, R anchor points (all levels concatenated, fine to coarse; Ri
    on level i), K classes, L landmarks of a set.

    Attributes:
        points: (R, 2) anchor points (x, y), pixels of the network input.
        strides: (R,) stride of each point, pixels.
        logits: per level (N, Ri, K) class logits.
        crosses: for each landmark set, its (initial, refined) crosses per level (N, Ri, L, 4), in
            strides (see :meth:`LSNet.decode_landmarks`).
        init_matched, refine_matched: per image (R,) int64 index of the GT each point is assigned
            to in the initial / refinement stage, -1 for none (always for points in the padding).
        valid: (N, R) bool, the points inside their image (:meth:`LSNet.points_inside_images`),
            the ones the class loss counts; None: all.
    """

    points: Tensor
    strides: Tensor
    logits: List[Tensor]
    crosses: Dict[str, Tuple[List[Tensor], List[Tensor]]]
    init_matched: List[Tensor]
    refine_matched: List[Tensor]
    valid: Optional[Tensor]


@META_ARCH_REGISTRY.register()
class LSNet(DenseDetector):
    """LSNet with one :class:`LandmarkHead`; ``MODEL.LSNET.TASK`` selects what the landmarks are."""

    @configurable
    def __init__(
        self,
        *,
        backbone,
        head: LandmarkHead,
        head_in_features: List[str],
        anchor_generator: DefaultAnchorGenerator,
        init_assigner: DenseAssigner,
        refine_assigner: DenseAssigner,
        num_classes: int,
        loss_weights: Dict[str, Tuple[float, float]],
        point_base_scale: float = 4.0,
        cross_iou_alpha: float = 0.2,
        contour_groups: int = 9,
        keypoint_overlap: str = "axis",
        focal_loss_alpha: float = 0.25,
        focal_loss_gamma: float = 2.0,
        class_loss: str = "focal",
        refine_assign_on: str = "initial_boxes",
        refine_anchor_scale: float = 8.0,
        refine_loss_weighting: str = "uniform",
        test_score_thresh: float = 0.05,
        test_topk_candidates: int = 1000,
        test_nms_thresh: float = 0.6,
        test_min_box_area: float = 0.0,
        max_detections_per_image: int = 100,
        pixel_mean,
        pixel_std,
    ):
        """
        Args:
            anchor_generator: one anchor per location with offset 0, so that the anchor centres
                are the anchor points (i * stride, j * stride); its boxes are not used.
            init_assigner, refine_assigner: assignment of the two stages (centre point, ATSS);
                the refinement assigner sees the boxes of the initial landmarks as anchors.
            loss_weights: (initial, refined) cross-IoU weights of each landmark set of the head.
            point_base_scale: landmark vectors are divided by point_base_scale * stride in the loss.
            cross_iou_alpha, contour_groups, keypoint_overlap: the cross-IoU loss.
            focal_loss_alpha, focal_loss_gamma: the class loss.
            class_loss: one of :data:`CLASS_LOSSES`: "focal" (binary targets) or "quality_focal"
                (QFL with beta ``focal_loss_gamma``; a positive's target is the IoU of its refined
                box with its GT's :meth:`assignment_boxes`, detached; alpha is not used).
            refine_assign_on: one of :data:`REFINE_ASSIGN_TARGETS`: what the refinement assigner
                ranks, the boxes of the initial landmarks or squares of side
                ``refine_anchor_scale * stride`` centred on the anchor points.
            refine_loss_weighting: one of :data:`REFINE_LOSS_WEIGHTINGS`: the refined landmark
                losses count each refinement positive once and are divided by their number
                ("uniform"), or, as GFL's box losses, weight each positive by its highest class
                probability (detached) and are divided by the sum of those weights ("score";
                averaged over workers, at least 1).
            test_min_box_area: detections whose box is at most this area (px^2 of the output
                image, i.e. the original image) are dropped after NMS, as the reference's pose test.
            Other arguments: as Detectron2's RetinaNet.
        """
        super().__init__(backbone, head, head_in_features, pixel_mean=pixel_mean, pixel_std=pixel_std)
        check_choice("MODEL.LSNET.CLASS_LOSS", class_loss, CLASS_LOSSES)
        check_choice("MODEL.LSNET.REFINE_ASSIGN_ON", refine_assign_on, REFINE_ASSIGN_TARGETS)
        check_choice("MODEL.LSNET.REFINE_LOSS_WEIGHTING", refine_loss_weighting, REFINE_LOSS_WEIGHTINGS)
        if not refine_anchor_scale > 0:
            raise ValueError(f"MODEL.LSNET.REFINE_ANCHOR_SCALE = {refine_anchor_scale}; it must be > 0.")
        missing = set(head.landmark_sets) - set(loss_weights)
        if missing:
            raise ValueError(f"LSNet: no loss weights for the landmark sets {sorted(missing)}.")
        self.anchor_generator = anchor_generator
        self.init_assigner = init_assigner
        self.refine_assigner = refine_assigner
        self.num_classes = num_classes
        self.loss_weights = loss_weights
        self.point_base_scale = point_base_scale
        self.cross_iou_alpha = cross_iou_alpha
        self.contour_groups = contour_groups
        self.keypoint_overlap = keypoint_overlap
        self.focal_loss_alpha = focal_loss_alpha
        self.focal_loss_gamma = focal_loss_gamma
        self.class_loss = class_loss
        self.refine_assign_on = refine_assign_on
        self.refine_anchor_scale = refine_anchor_scale
        self.refine_loss_weighting = refine_loss_weighting
        self.test_score_thresh = test_score_thresh
        self.test_topk_candidates = test_topk_candidates
        self.test_nms_thresh = test_nms_thresh
        self.test_min_box_area = test_min_box_area
        self.max_detections_per_image = max_detections_per_image

    @classmethod
    def from_config(cls, cfg):
        node = cfg.MODEL.LSNET
        if node.TASK == "contour" and not cfg.MODEL.MASK_ON:
            raise ValueError("MODEL.LSNET.TASK = 'contour' predicts masks: set MODEL.MASK_ON True.")
        if node.TASK == "keypoint" and not cfg.MODEL.KEYPOINT_ON:
            raise ValueError("MODEL.LSNET.TASK = 'keypoint' predicts keypoints: set MODEL.KEYPOINT_ON True.")
        backbone = build_backbone(cfg)
        missing = [f for f in node.IN_FEATURES if f not in backbone.output_shape()]
        if missing:
            raise ValueError(
                f"MODEL.LSNET.IN_FEATURES names {missing}, which the backbone does not output "
                f"(it has {sorted(backbone.output_shape())})."
            )
        shapes = [backbone.output_shape()[f] for f in node.IN_FEATURES]
        strides = [s.stride for s in shapes]
        main_weights = (node.INIT_LOSS_WEIGHT, node.REFINE_LOSS_WEIGHT)
        # The box set is the task's own landmarks for "box", an auxiliary set beside the keypoints for "keypoint".
        box_weights = (
            main_weights
            if node.TASK == "box"
            else (node.BOX_BRANCH_INIT_LOSS_WEIGHT, node.BOX_BRANCH_REFINE_LOSS_WEIGHT)
        )
        return {
            "backbone": backbone,
            "head": LandmarkHead(cfg, shapes),
            "head_in_features": node.IN_FEATURES,
            "anchor_generator": DefaultAnchorGenerator(
                sizes=[[node.POINT_BASE_SCALE * s] for s in strides], aspect_ratios=[1.0], strides=strides, offset=0.0
            ),
            "init_assigner": CentrePointAssigner(strides, scale=node.POINT_BASE_SCALE, pos_num=node.INIT_POS_NUM),
            "refine_assigner": ATSSAssigner(topk=node.ATSS_TOPK),
            "num_classes": node.NUM_CLASSES,
            "loss_weights": {"box": box_weights, "contour": main_weights, "keypoint": main_weights},
            "point_base_scale": node.POINT_BASE_SCALE,
            "cross_iou_alpha": node.CROSS_IOU_ALPHA,
            "contour_groups": node.CONTOUR_GROUPS,
            "keypoint_overlap": node.KEYPOINT_OVERLAP,
            "focal_loss_alpha": node.FOCAL_LOSS_ALPHA,
            "focal_loss_gamma": node.FOCAL_LOSS_GAMMA,
            "class_loss": node.CLASS_LOSS,
            "refine_assign_on": node.REFINE_ASSIGN_ON,
            "refine_anchor_scale": node.REFINE_ANCHOR_SCALE,
            "refine_loss_weighting": node.REFINE_LOSS_WEIGHTING,
            "test_score_thresh": node.SCORE_THRESH_TEST,
            "test_topk_candidates": node.TOPK_CANDIDATES_TEST,
            "test_nms_thresh": node.NMS_THRESH_TEST,
            "test_min_box_area": node.MIN_BOX_AREA_TEST,
            "max_detections_per_image": cfg.TEST.DETECTIONS_PER_IMAGE,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
        }

    @classmethod
    def requirements(cls, cfg) -> ModelRequirements:
        """Trains with :class:`iou_aware.data.LandmarkDatasetMapper`, which writes the landmark
        targets of the task (the model can derive them itself, more slowly)."""
        return ModelRequirements(
            class_count_key="MODEL.LSNET.NUM_CLASSES",
            train_mapper="LandmarkDatasetMapper",
            mapper_options={
                "landmark_task": cfg.MODEL.LSNET.TASK,
                "num_contour_points": cfg.MODEL.LSNET.NUM_CONTOUR_POINTS,
            },
        )

    @property
    def box_source(self) -> str:
        """The landmark set whose landmarks give the boxes: "box" when predicted, else the task's own."""
        sets = self.head.landmark_sets
        return "box" if "box" in sets else next(iter(sets))

    def _transpose(self, predictions) -> Tuple[List[Tensor], Dict[str, Tuple[List[Tensor], List[Tensor]]]]:
        """Head outputs -> per level class logits (N, Ri, K), and for each landmark set the initial
        and refined crosses per level (N, Ri, L, 4)."""
        sets = self.head.landmark_sets
        dims = [self.num_classes] + [4 * s.num_landmarks for s in sets.values() for _ in range(2)]
        transposed = transpose_dense_predictions(predictions, dims)
        crosses = {}
        for i, (name, landmark_set) in enumerate(sets.items()):
            init, refined = transposed[1 + 2 * i], transposed[2 + 2 * i]
            crosses[name] = tuple(
                [x.unflatten(-1, (landmark_set.num_landmarks, 4)) for x in stage] for stage in (init, refined)
            )
        return transposed[0], crosses

    def decode_landmarks(self, crosses: Tensor, points: Tensor, strides: Union[Tensor, float]) -> Tensor:
        """
        Args:
            crosses: (..., L, 4) crosses in strides; points: (..., 2) anchor points in pixels;
            strides: (...) the stride of each point, or one stride for all.

        Returns:
            (..., L, 2) absolute (x, y) landmarks in pixels.
        """
        if isinstance(strides, Tensor):
            strides = strides[..., None, None]
        return points[..., None, :] + crosses_to_offsets(crosses) * strides

    def forward_training(self, images, features, predictions, gt_instances):
        gt_instances = [self._with_landmark_targets(x) for x in gt_instances]
        return self.losses(self.assign(images, features, predictions, gt_instances), gt_instances)

    def assign(
        self, images: ImageList, features: List[Tensor], predictions, gt_instances: List[Instances]
    ) -> LSNetTargets:
        """The targets of both stages for a batch of head outputs. Both assigners choose among the
        points inside each image only (:meth:`points_inside_images`): a GT whose nearest point, or
        some of whose ATSS candidates, fall in the padding of the batch gets the nearest points
        inside its image instead, as the reference's assigners, which see the valid points only.

        Returns:
            :class:`LSNetTargets` of the batch.
        """
        logits, crosses = self._transpose(predictions)
        anchors = self.anchor_generator(features)
        points, strides = anchor_points_and_strides(anchors, self.anchor_generator.strides)
        for name, landmark_set in self.head.landmark_sets.items():
            field = f"gt_{name}_landmarks"
            if any(not x.has(field) for x in gt_instances):
                raise ValueError(f"LSNet.assign needs `{field}` in each image's instances (see forward_training).")
            counts = {x.get(field).shape[1] for x in gt_instances if len(x)} - {landmark_set.num_landmarks}
            if counts:
                key = {
                    "keypoint": "MODEL.ROI_KEYPOINT_HEAD.NUM_KEYPOINTS",
                    "contour": "MODEL.LSNET.NUM_CONTOUR_POINTS",
                }.get(name, name)
                raise ValueError(
                    f"`{field}` has {sorted(c - 1 for c in counts)} landmarks (+ centre) per instance, the model "
                    f"predicts {landmark_set.num_landmarks - 1}: set {key} to the dataset's count."
                )
        assignment_boxes = [self.assignment_boxes(x) for x in gt_instances]
        valid = self.points_inside_images(points, images.image_sizes)  # (N, R)
        init_matched = [
            self.init_assigner([a.tensor for a in anchors], boxes, valid=v) for boxes, v in zip(assignment_boxes, valid)
        ]
        level_sizes = [len(a) for a in anchors]
        if self.refine_assign_on == "anchors":
            half_side = (self.refine_anchor_scale / 2) * strides[:, None]
            squares = torch.cat([points - half_side, points + half_side], dim=1)
            init_boxes = squares[None].expand(len(gt_instances), -1, -1)
        else:
            init_boxes = self.landmark_boxes(crosses[self.box_source][0], points, strides).detach()  # (N, R, 4)
        refine_matched = [
            self.refine_assigner(list(boxes.split(level_sizes)), gt_boxes, valid=v)
            for boxes, gt_boxes, v in zip(init_boxes, assignment_boxes, valid)
        ]
        return LSNetTargets(points, strides, logits, crosses, init_matched, refine_matched, valid)

    def landmark_boxes(self, crosses: List[Tensor], points: Tensor, strides: Tensor) -> Tensor:
        """(N, R, 4) XYXY boxes in pixels of one stage's crosses of the box source (per level
        (N, Ri, L, 4), as :meth:`_transpose` gives them) at the anchor points (R, 2) of strides (R,)."""
        landmarks = self.decode_landmarks(torch.cat(crosses, dim=1), points, strides)
        return landmarks_to_boxes(landmarks, self.head.landmark_sets[self.box_source].cross_iou_mode)

    def _with_landmark_targets(self, instances: Instances) -> Instances:
        """``instances`` with the landmark targets of every set: as LandmarkDatasetMapper wrote
        them, or derived here from the standard fields (gt_boxes, gt_masks, gt_keypoints) that
        any Detectron2 mapper gives (on the CPU, once per image: the mapper is the fast path)."""
        sets = self.head.landmark_sets
        if all(instances.has(f"gt_{name}_landmarks") for name in sets):
            return instances
        try:
            derived = add_landmark_targets(instances.to("cpu"), list(sets), self.head.num_contour_points)
        except (AttributeError, KeyError, ValueError) as e:
            raise ValueError(
                f"LSNet ({self.head.task}) trains on {[f'gt_{n}_landmarks' for n in sets]}, or derives them from "
                f"gt_boxes / gt_masks / gt_keypoints, which these instances lack ({e}); build the train loader "
                "with iou_aware.data.LandmarkDatasetMapper (iou_aware.engine.Trainer does)."
            ) from e
        return derived.to(instances.gt_boxes.device)

    @staticmethod
    def points_inside_images(points: Tensor, image_sizes: List[Tuple[int, int]]) -> Tensor:
        """(N, R) bool: which anchor points (R, 2) lie inside each image's (height, width), i.e.
        not in the padding of the batch. As the reference's valid flags, padding points are never
        candidates of the assigners, and neither positives nor negatives."""
        sizes = points.new_tensor([[w, h] for h, w in image_sizes])  # (N, 2)
        return (points[None] < sizes[:, None, :]).all(dim=2)

    def assignment_boxes(self, instances: Instances) -> Tensor:
        """(G, 4) XYXY boxes the instances are assigned on, and the target boxes of the cross-IoU
        penalty: the annotation boxes, or for the contour task the extent of the contour
        landmarks (the reference assigns a contour on its sampled largest component, so an
        occluded object in two pieces trains on the piece its contour describes)."""
        if self.head.task == "contour":
            return landmarks_to_boxes(instances.gt_contour_landmarks, "contour")
        return instances.gt_boxes.tensor

    def losses(self, targets: LSNetTargets, gt_instances: List[Instances]) -> Dict[str, Tensor]:
        """
        Focal loss (or QFL, see ``class_loss``) on every point against the refinement stage's labels; for each landmark set,
        cross-IoU loss of each stage on its positives (``loss_<set>_init``, ``loss_<set>_refine``).
        Each loss is divided by its stage's positives, summed over the images with at least 1 per
        image and averaged over workers.

        Args:
            targets: the head outputs and positives (:meth:`assign`); only the ``valid`` points
                count in the class loss.
            gt_instances: per image, the instances ``targets`` was assigned on.
        """
        points, strides, logits, crosses = targets.points, targets.strides, targets.logits, targets.crosses
        init_matched, refine_matched, valid = targets.init_matched, targets.refine_matched, targets.valid
        num_images = len(gt_instances)
        refine_matched_all = torch.stack(refine_matched)  # (N, R)
        gt_classes = torch.stack(
            [
                x.gt_classes[m.clamp(min=0)] if len(x) else m.new_zeros(m.shape)
                for x, m in zip(gt_instances, refine_matched)
            ]
        )
        gt_classes = gt_classes.masked_fill(refine_matched_all < 0, self.num_classes)
        one_hot = F.one_hot(gt_classes.flatten(), self.num_classes + 1)[:, :-1].to(logits[0].dtype)
        num_init = self._normalizer(init_matched)
        num_refine = self._normalizer(refine_matched)
        get_event_storage().put_scalar("num_pos_points", (refine_matched_all >= 0).sum().item() / num_images)
        logits_all = cat(logits, dim=1).flatten(0, 1)
        if valid is not None:
            logits_all, one_hot = logits_all[valid.flatten()], one_hot[valid.flatten()]
        if self.class_loss == "quality_focal":
            quality = self._refined_box_quality(points, strides, crosses, refine_matched, gt_instances).flatten()
            labels = gt_classes.flatten()
            if valid is not None:
                quality, labels = quality[valid.flatten()], labels[valid.flatten()]
            loss_cls = quality_focal_loss(logits_all, labels, quality, beta=self.focal_loss_gamma, reduction="sum")
        else:
            loss_cls = sigmoid_focal_loss_jit(
                logits_all,
                one_hot,
                alpha=self.focal_loss_alpha,
                gamma=self.focal_loss_gamma,
                reduction="sum",
            )
        losses = {"loss_cls": loss_cls / num_refine}
        point_weights, refine_normalizer = None, num_refine
        if self.refine_loss_weighting == "score":
            point_weights = cat(logits, dim=1).detach().sigmoid().amax(dim=2)  # (N, R)
            refine_normalizer = reduce_mean(point_weights[refine_matched_all >= 0].sum().float()).clamp(min=1.0)
        for name, (init, refined) in crosses.items():
            init_weight, refine_weight = self.loss_weights[name]
            losses[f"loss_{name}_init"] = (
                init_weight * self._landmark_loss(name, init, init_matched, points, strides, gt_instances) / num_init
            )
            refine_loss = self._landmark_loss(
                name, refined, refine_matched, points, strides, gt_instances, point_weights
            )
            losses[f"loss_{name}_refine"] = refine_weight * refine_loss / refine_normalizer
        return losses

    @torch.no_grad()
    def _refined_box_quality(self, points, strides, crosses, refine_matched, gt_instances) -> Tensor:
        """(N, R) IoU of each refinement positive's refined box with its GT's assignment box; 0 elsewhere."""
        refined_boxes = self.landmark_boxes(crosses[self.box_source][1], points, strides)
        quality = refined_boxes.new_zeros(refined_boxes.shape[:2])
        for quality_i, boxes_i, matched_i, instances in zip(quality, refined_boxes, refine_matched, gt_instances):
            positive = matched_i >= 0
            gt_boxes = self.assignment_boxes(instances)[matched_i[positive]]
            quality_i[positive] = aligned_box_iou(boxes_i[positive].float(), gt_boxes.float()).to(quality.dtype)
        return quality

    @staticmethod
    def _normalizer(matched: List[Tensor]) -> Tensor:
        num_pos = sum((m >= 0).sum().clamp(min=1) for m in matched).float()
        return reduce_mean(num_pos).clamp(min=1.0)

    def _landmark_loss(self, name, crosses, matched, points, strides, gt_instances, point_weights=None) -> Tensor:
        """Summed cross-IoU loss of one landmark set and stage: (N, R, L, 4) crosses against the
        landmarks of the GT matched to each positive point, both in units of
        point_base_scale * stride; the box penalty's target is the GT's :meth:`assignment_boxes`.
        ``point_weights`` (N, R), if given, multiplies each positive's loss."""
        landmark_set = self.head.landmark_sets[name]
        mode = landmark_set.cross_iou_mode
        crosses = cat(crosses, dim=1)
        pred, target, target_boxes, visible = [], [], [], []
        for crosses_i, matched_i, instances in zip(crosses, matched, gt_instances):
            positive = matched_i >= 0
            gt_index = matched_i[positive]
            scale = (self.point_base_scale * strides[positive])[:, None]
            pred.append(crosses_i[positive] / self.point_base_scale)
            gt = instances.get(f"gt_{name}_landmarks")[gt_index]
            target.append((gt - points[positive][:, None, :]) / scale[..., None])
            boxes = self.assignment_boxes(instances)[gt_index]
            target_boxes.append((boxes - points[positive].repeat(1, 2)) / scale)
            if mode == "keypoint":
                visible.append(instances.gt_keypoint_visible[gt_index])
        return cross_iou_loss(
            torch.cat(pred),
            torch.cat(target),
            mode=mode,
            alpha=self.cross_iou_alpha,
            visible=torch.cat(visible) if visible else None,
            # Image-major, as the positives are concatenated above.
            weight=None if point_weights is None else point_weights[torch.stack(matched) >= 0],
            reduction="sum",
            num_groups=self.contour_groups,
            target_boxes=None if mode == "keypoint" else torch.cat(target_boxes),
            keypoint_overlap=self.keypoint_overlap,
        )

    def forward_inference(self, images: ImageList, features: List[Tensor], predictions):
        logits, crosses = self._transpose(predictions)
        anchors = self.anchor_generator(features)
        strides = self.anchor_generator.strides
        sets = self.head.landmark_sets
        results = []
        for img_idx, image_size in enumerate(images.image_sizes):

            def decode(level: int, point_idxs: Tensor, class_idxs: Tensor, img_idx=img_idx) -> Dict[str, Tensor]:
                points = anchors[level].get_centers()[point_idxs]
                landmarks = {
                    name: self.decode_landmarks(refined[level][img_idx][point_idxs], points, float(strides[level]))
                    for name, (_, refined) in crosses.items()
                }
                boxes = landmarks_to_boxes(landmarks[self.box_source], sets[self.box_source].cross_iou_mode)
                # A box whose landmarks cross over (e.g. "left" right of "right": an untrained
                # model) is output as the box spanning them rather than an empty one.
                boxes = torch.cat(
                    [torch.minimum(boxes[:, :2], boxes[:, 2:]), torch.maximum(boxes[:, :2], boxes[:, 2:])], dim=1
                )
                fields = {"pred_boxes": boxes}
                if "contour" in landmarks:
                    fields["pred_polygons"] = landmarks["contour"][:, :-1]
                if "keypoint" in landmarks:
                    # Each keypoint is scored with its detection's score (filled in below).
                    fields["pred_keypoints"] = landmarks["keypoint"][:, :-1]
                return fields

            level_scores = [x[img_idx].sigmoid() for x in logits]
            detections = decode_dense_detections(
                level_scores,
                decode,
                image_size,
                **inference_settings(self),
            )
            if detections.has("pred_keypoints"):
                keypoints = detections.pred_keypoints
                keypoint_scores = detections.scores[:, None, None].expand(-1, keypoints.shape[1], 1)
                detections.pred_keypoints = torch.cat([keypoints, keypoint_scores], dim=2)
            results.append(detections)
        return results

    def forward(self, batched_inputs: List[Dict[str, Tensor]]):
        """DenseDetector's forward; then, at the output resolution, :meth:`postprocess_landmarks`:
        detections with a box of at most ``test_min_box_area`` px^2 are dropped, keypoints are
        clamped to the image, and for contours the polygons are scaled like the boxes and filled
        into ``pred_masks`` (R, H, W) bool. Traced, the model outputs the polygons only: the
        filling runs in pycocotools."""
        outputs = super().forward(batched_inputs)
        if self.training:
            return outputs
        for output, inputs in zip(outputs, batched_inputs):
            output["instances"] = self.postprocess_landmarks(
                output["instances"],
                inputs["image"].shape[-2:],
                self.test_min_box_area,
                fill_masks=not torch.jit.is_tracing(),
            )
        return outputs

    @staticmethod
    def postprocess_landmarks(
        instances: Instances, input_size: Tuple[int, int], min_box_area: float = 0.0, fill_masks: bool = True
    ) -> Instances:
        """What :meth:`forward` does after Detectron2's ``detector_postprocess``, at the output
        resolution (also run by exported models' predictors on the graph's detections): drop the
        detections whose box is at most ``min_box_area`` px^2, clamp keypoints to the image
        (:meth:`clamp_keypoints`), scale ``pred_polygons`` from the network's ``input_size``
        (height, width) to the output and, with ``fill_masks``, fill them into ``pred_masks``
        (R, H, W) bool."""
        if min_box_area > 0:
            instances = instances[instances.pred_boxes.area() > min_box_area]
        if instances.has("pred_keypoints"):
            instances.pred_keypoints = LSNet.clamp_keypoints(instances.pred_keypoints, instances.image_size)
        if instances.has("pred_polygons"):
            in_height, in_width = input_size
            out_height, out_width = instances.image_size
            scale = instances.pred_polygons.new_tensor([out_width / in_width, out_height / in_height])
            instances.pred_polygons = instances.pred_polygons * scale
            if fill_masks:
                instances.pred_masks = rasterize_polygons(instances.pred_polygons, out_height, out_width)
        return instances

    @staticmethod
    def clamp_keypoints(keypoints: Tensor, image_size: Union[Tuple[int, int], Tensor]) -> Tensor:
        """Keypoints moved into the image, as the reference's test (x to [0, width], y to
        [0, height], not width - 1 and height - 1).

        Args:
            keypoints: (R, K, 3) (x, y, score), x and y in pixels of the image.
            image_size: (height, width) in pixels: ints, or in a trace the (2,) tensor that
                Detectron2's ``detector_postprocess`` sets, so that the bounds stay traced rather
                than constants of the traced size.
        Returns:
            (R, K, 3) tensor; the scores unchanged.
        """
        if isinstance(image_size, Tensor):
            upper = image_size.flip(0).to(keypoints)
        else:
            upper = keypoints.new_tensor([image_size[1], image_size[0]])
        xy = torch.minimum(keypoints[..., :2].clamp(min=0), upper)
        return torch.cat([xy, keypoints[..., 2:]], dim=-1)
