"""What an export traces: the network part of a detector, from one preprocessed image to its raw
detections in the coordinates of that image."""

from typing import Callable, Dict, List

import torch
from detectron2.modeling import GeneralizedRCNN
from detectron2.modeling.meta_arch.dense_detector import DenseDetector
from detectron2.structures import Instances
from torch import nn

__all__ = ["traceable_inference"]

InferenceFn = Callable[[nn.Module, List[Dict[str, torch.Tensor]]], List[Instances]]


def traceable_inference(model: nn.Module) -> InferenceFn:
    """The ``inference_func`` of Detectron2's ``TracingAdapter`` for ``model``: (model, inputs)
    -> one Instances per input, in the coordinates of the input tensor (the image after the
    test-time resize), before any rescaling to the original image:

    * GeneralizedRCNN: ``model.inference(inputs, do_postprocess=False)`` (Detectron2's choice;
      masks are the (R, 1, M, M) probabilities of the mask head, not yet pasted).
    * Dense detectors (Detectron2's ``DenseDetector`` subclasses: RetinaNet, IoUAwareRetinaNet,
      GFL, GFLV2, LSNet): normalization, padding, backbone, head and ``forward_inference``, i.e.
      the detector's forward without its ``detector_postprocess`` (and, for LSNet, without
      :meth:`~iou_aware.modeling.LSNet.postprocess_landmarks`).

    What the eager model does after this, at the original image's size, is
    :func:`iou_aware.deployment.postprocess_detections`; an exported model's predictor does the
    same on the exported graph's outputs.
    """
    if isinstance(model, GeneralizedRCNN):
        return lambda model, inputs: model.inference(inputs, do_postprocess=False)
    if isinstance(model, DenseDetector):
        return _dense_inference
    raise TypeError(
        f"cannot export {type(model).__name__}: only GeneralizedRCNN and DenseDetector subclasses "
        "(RetinaNet, IoUAwareRetinaNet, GFL, GFLV2, LSNet) are supported"
    )


def _dense_inference(model: DenseDetector, inputs: List[Dict[str, torch.Tensor]]) -> List[Instances]:
    # DenseDetector.forward in eval mode, up to its detector_postprocess.
    images = model.preprocess_image(inputs)
    features = model.backbone(images.tensor)
    features = [features[f] for f in model.head_in_features]
    predictions = model.head(features)
    return model.forward_inference(images, features, predictions)
