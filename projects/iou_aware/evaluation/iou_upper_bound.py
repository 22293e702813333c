"""The IoU-aware paper's upper bound, as an analysis beside the production model: a trained
IoU-aware RetinaNet ranks its detections with the true IoU of each box (with its best-matching
ground-truth box, any class) in place of the predicted one, on the same weights.

    model = GroundTruthIoUModel(trained_iou_aware_retinanet)
    loader = build_detection_test_loader(cfg, dataset, mapper=build_annotated_test_mapper(cfg))
    inference_on_dataset(model, loader, evaluator)

``tools/analyze.py --upper-bound`` runs it.
"""

from typing import Dict, List

import torch
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Boxes
from torch import Tensor, nn

from ..layers import pairwise_box_iou
from ..modeling import IoUAwareRetinaNet
from ..modeling.dense_predictions import transpose_dense_predictions

__all__ = ["GroundTruthIoUModel", "ground_truth_ious"]


def ground_truth_ious(boxes: List[Tensor], gt_boxes: Tensor, image_size) -> List[Tensor]:
    """Per level (Ri,): the IoU of each decoded box (Ri, 4) XYXY px, clipped to the image as the
    output box will be, with its best-matching GT box (G, 4); 0 when the image has no GT."""
    ious = []
    for level_boxes in boxes:
        if len(gt_boxes) == 0:
            ious.append(level_boxes.new_zeros(len(level_boxes)))
            continue
        clipped = Boxes(level_boxes.clone())
        clipped.clip(image_size)
        ious.append(pairwise_box_iou(clipped.tensor, gt_boxes).max(dim=1).values)
    return ious


class GroundTruthIoUModel(nn.Module):
    """Inference of an :class:`IoUAwareRetinaNet` whose IoU estimates are the true IoUs; its
    inputs must carry ``instances`` with ``gt_boxes`` (``build_annotated_test_mapper``)."""

    def __init__(self, model: IoUAwareRetinaNet):
        super().__init__()
        if not isinstance(model, IoUAwareRetinaNet):
            raise TypeError(
                f"The IoU upper bound needs an IoUAwareRetinaNet (MODEL.META_ARCHITECTURE), got {type(model).__name__}."
            )
        self.model = model

    @torch.no_grad()
    def forward(self, batched_inputs: List[Dict]) -> List[Dict]:
        model = self.model
        if any("instances" not in x for x in batched_inputs):
            raise ValueError(
                "The IoU upper bound needs test inputs with 'instances': build the test loader with "
                "iou_aware.data.build_annotated_test_mapper(cfg)."
            )
        images = model.preprocess_image(batched_inputs)
        features = model.backbone(images.tensor)
        features = [features[f] for f in model.head_in_features]
        pred_logits, pred_deltas, _ = transpose_dense_predictions(model.head(features), [model.num_classes, 4, 1])
        anchors = model.anchor_generator(features)
        outputs = []
        for img_idx, (inputs, image_size) in enumerate(zip(batched_inputs, images.image_sizes)):
            deltas = [x[img_idx] for x in pred_deltas]
            boxes = [model.box2box_transform.apply_deltas(d, a.tensor) for d, a in zip(deltas, anchors)]
            gt_boxes = inputs["instances"].gt_boxes.tensor.to(images.tensor.device)
            ious = ground_truth_ious(boxes, gt_boxes, image_size)
            cls_probs = [x[img_idx].sigmoid() for x in pred_logits]
            result = model.inference_single_image(anchors, cls_probs, deltas, image_size, ious)
            height, width = inputs.get("height", image_size[0]), inputs.get("width", image_size[1])
            outputs.append({"instances": detector_postprocess(result, height, width)})
        return outputs
