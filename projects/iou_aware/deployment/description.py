"""The JSON description that ``tools/export.py`` writes beside an exported model (``export.json``),
and what a predictor does with it: rebuild the detections from the graph's outputs and bring them
to the original image's size as the eager model does.

An exported graph takes one image (3, height, width), float32, in ``INPUT.FORMAT`` channel order,
already resized by the test-time ``ResizeShortestEdge``, and returns the raw detections of
:func:`~iou_aware.deployment.traceable_inference` as a flat tuple of tensors, one per field of the
detections' ``Instances`` (Detectron2's ``TracingAdapter`` order: the field names sorted, then the
image size). ``export.json`` says which tensor is which, so that no pickle is needed::

    {
      "version": 1,
      "model_file": "model.onnx",
      "format": "onnx",
      "meta_architecture": "GFLV2",
      "input": {"name": "image", "layout": "CHW", "dtype": "float32", "channel_order": "BGR",
                "resize": {"type": "ResizeShortestEdge", "min_size": 256, "max_size": 256}},
      "outputs": [
        {"name": "pred_boxes", "kind": "boxes", "dtype": "float32", "shape": ["R", 4]},
        {"name": "pred_classes", "kind": "tensor", "dtype": "int64", "shape": ["R"]},
        {"name": "scores", "kind": "tensor", "dtype": "float32", "shape": ["R"]},
        {"name": "image_size", "kind": "image_size", "dtype": "int64", "shape": [2]}
      ],
      "postprocess": {"lsnet": null},
      "metadata": {"dataset": "shapes_val", "thing_classes": ["circle", "square", ...]}
    }

``outputs`` are in the graph's output order (an ONNX graph's outputs carry these names); "boxes"
are XYXY pixels (Detectron2's ``Boxes``), R is the number of detections. ``postprocess.lsnet``
holds the arguments of :meth:`iou_aware.modeling.LSNet.postprocess_landmarks` for LSNet, else
null. ``metadata`` holds what Detectron2's ``Visualizer`` reads from the test dataset's metadata.
"""

import json
import os
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from detectron2.data import Metadata
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Boxes, Instances

from ..modeling import LSNet, config_value, model_requirements

__all__ = [
    "DESCRIPTION_FILE",
    "DESCRIPTION_VERSION",
    "describe_export",
    "write_description",
    "read_description",
    "instances_from_outputs",
    "postprocess_detections",
    "metadata_from_description",
]

DESCRIPTION_FILE = "export.json"
DESCRIPTION_VERSION = 1
# What Detectron2's Visualizer reads from a dataset's metadata.
VISUALIZER_METADATA = ("thing_classes", "thing_colors", "keypoint_names", "keypoint_connection_rules")


def describe_export(
    cfg, model: torch.nn.Module, detections: Instances, model_file: str, format: str, metadata=None
) -> Dict[str, Any]:
    """The description of an export (see the module docstring).

    Args:
        cfg: the model's config (``INPUT.FORMAT``, ``INPUT.MIN_SIZE_TEST``, ``INPUT.MAX_SIZE_TEST``,
            ``MODEL.META_ARCHITECTURE``, ``DATASETS.TEST``).
        model: the exported model.
        detections: the raw detections of one image (:func:`~iou_aware.deployment.traceable_inference`),
            e.g. those the trace recorded: their fields and types describe the outputs.
        model_file: file name of the exported model, relative to the description.
        format: "onnx" or "torchscript".
        metadata: Detectron2 ``Metadata`` of the test dataset, or None.
    """
    outputs = []
    for name in sorted(detections.get_fields()):
        value = detections.get(name)
        if isinstance(value, Boxes):
            outputs.append(_output(name, "boxes", value.tensor))
        elif isinstance(value, torch.Tensor):
            outputs.append(_output(name, "tensor", value))
        else:
            raise TypeError(f"cannot describe the output field {name!r} of type {type(value).__name__}")
    outputs.append({"name": "image_size", "kind": "image_size", "dtype": "int64", "shape": [2]})
    return {
        "version": DESCRIPTION_VERSION,
        "model_file": model_file,
        "format": format,
        "meta_architecture": cfg.MODEL.META_ARCHITECTURE,
        "input": {
            "name": "image",
            "layout": "CHW",
            "dtype": "float32",
            "channel_order": cfg.INPUT.FORMAT,
            "resize": {
                "type": "ResizeShortestEdge",
                "min_size": int(cfg.INPUT.MIN_SIZE_TEST),
                "max_size": int(cfg.INPUT.MAX_SIZE_TEST),
            },
        },
        "outputs": outputs,
        "postprocess": {
            "lsnet": {"min_box_area": float(model.test_min_box_area)} if isinstance(model, LSNet) else None,
        },
        "metadata": _jsonable_metadata(metadata, cfg.DATASETS.TEST[0] if len(cfg.DATASETS.TEST) else None),
    }


def check_class_names(cfg, metadata) -> None:
    """Raise ValueError when the test dataset's ``thing_classes`` (the names the Visualizer and an
    export's description give the classes) are not one per class of the model: a model trained on
    your data with the config's own test dataset (e.g. ``shapes_val``) would be drawn and exported
    with that dataset's names."""
    names = metadata.get("thing_classes", None) if metadata is not None else None
    key = model_requirements(cfg).class_count_key
    if names is None or not key:
        return
    count = config_value(cfg, key)
    if len(names) != count:
        dataset = cfg.DATASETS.TEST[0] if len(cfg.DATASETS.TEST) else None
        raise ValueError(
            f"the model has {key} = {count} classes, but the test dataset {dataset!r} names {len(names)} "
            f"({list(names)[:6]}): set DATASETS.TEST to your data (registered with --register-coco / "
            "--register-voc), e.g. with the config.yaml that training wrote into its OUTPUT_DIR"
        )


def _output(name: str, kind: str, tensor: torch.Tensor) -> Dict[str, Any]:
    dtype = str(tensor.dtype).replace("torch.", "")
    return {"name": name, "kind": kind, "dtype": dtype, "shape": ["R", *tensor.shape[1:]]}


def _jsonable_metadata(metadata, dataset: Optional[str]) -> Dict[str, Any]:
    found = {"dataset": dataset}
    for key in VISUALIZER_METADATA:
        value = metadata.get(key, None) if metadata is not None else None
        if value is not None:
            found[key] = json.loads(json.dumps(value))  # tuples -> lists
    return found


def write_description(description: Dict[str, Any], output_dir: str) -> str:
    """Write ``description`` to ``<output_dir>/export.json``; returns the path."""
    path = os.path.join(output_dir, DESCRIPTION_FILE)
    with open(path, "w") as f:
        json.dump(description, f, indent=2)
        f.write("\n")
    return path


def read_description(export_dir: str) -> Dict[str, Any]:
    """The description in ``<export_dir>/export.json``, checked for its version and fields."""
    path = os.path.join(export_dir, DESCRIPTION_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path} not found: export the model with tools/export.py, which writes it beside the model"
        )
    with open(path) as f:
        description = json.load(f)
    version = description.get("version")
    if version != DESCRIPTION_VERSION:
        raise ValueError(f"{path}: description version {version}, this iou_aware reads version {DESCRIPTION_VERSION}")
    missing = {"model_file", "input", "outputs", "postprocess"} - set(description)
    if missing:
        raise ValueError(f"{path}: missing {sorted(missing)}")
    return description


def instances_from_outputs(
    description: Dict[str, Any], outputs: Sequence[Any], image_size: Tuple[int, int]
) -> Instances:
    """The detections of an exported graph as ``Instances`` of ``image_size`` (the size of the
    graph's input image): ``outputs`` are the graph's outputs (tensors or numpy arrays) in the
    order of ``description["outputs"]``."""
    fields = description["outputs"]
    if len(outputs) != len(fields):
        raise ValueError(f"the exported model returned {len(outputs)} outputs, its description names {len(fields)}")
    instances = Instances(tuple(int(s) for s in image_size))
    for field, value in zip(fields, outputs):
        value = torch.as_tensor(np.asarray(value)) if not isinstance(value, torch.Tensor) else value
        if field["kind"] == "boxes":
            instances.set(field["name"], Boxes(value))
        elif field["kind"] == "tensor":
            instances.set(field["name"], value)
    return instances


def postprocess_detections(
    instances: Instances, description: Dict[str, Any], input_size: Tuple[int, int], output_size: Tuple[int, int]
) -> Instances:
    """What the eager model does to its raw detections (input-image coordinates, ``input_size``)
    to return them at ``output_size`` (height, width) of the original image: Detectron2's
    ``detector_postprocess`` (boxes scaled and clipped, empty boxes dropped, Mask R-CNN's masks
    pasted, keypoints scaled), then for LSNet :meth:`~iou_aware.modeling.LSNet.postprocess_landmarks`
    (contours filled into ``pred_masks``, keypoints clamped, the minimum box area)."""
    height, width = output_size
    instances = detector_postprocess(instances, height, width)
    lsnet = description["postprocess"].get("lsnet")
    if lsnet is not None:
        instances = LSNet.postprocess_landmarks(instances, input_size, lsnet.get("min_box_area", 0.0))
    return instances


def metadata_from_description(description: Dict[str, Any]) -> Metadata:
    """Detectron2 ``Metadata`` with the fields the Visualizer reads (class names, colours,
    keypoint names and connections), as saved at export."""
    saved = dict(description.get("metadata") or {})
    name = saved.pop("dataset", None) or "__exported_model"
    metadata = Metadata(name=name)
    if "keypoint_connection_rules" in saved:
        rules = saved["keypoint_connection_rules"]
        saved["keypoint_connection_rules"] = [(a, b, tuple(color)) for a, b, color in rules]
    for key, value in saved.items():
        setattr(metadata, key, value)
    return metadata
