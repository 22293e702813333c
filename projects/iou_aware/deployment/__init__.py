"""Deployment of exported models: what an export traces, the JSON description written beside an
exported model, the post-processing that brings its detections to the original image, and
:class:`OnnxPredictor` (ONNX Runtime, imported when a predictor is made)."""

from .description import (
    DESCRIPTION_FILE,
    DESCRIPTION_VERSION,
    check_class_names,
    describe_export,
    instances_from_outputs,
    metadata_from_description,
    postprocess_detections,
    read_description,
    write_description,
)
from .onnx_predictor import OnnxPredictor, import_onnxruntime
from .tracing import traceable_inference

__all__ = [k for k in globals().keys() if not k.startswith("_")]
