"""A predictor for a model exported to ONNX by ``tools/export.py``, in the spirit of Detectron2's
``DefaultPredictor``: one BGR image in, its detections at the image's own size out.

    from iou_aware.deployment import OnnxPredictor

    predictor = OnnxPredictor("export/")            # model.onnx + export.json
    instances = predictor(cv2.imread("input.jpg"))["instances"]

It needs ONNX Runtime (``pip install iou_aware[onnx]`` or ``pip install onnxruntime``), but neither
the model's config nor its weights nor a pickle: everything comes from ``export.json``
(:mod:`iou_aware.deployment.description`).
"""

import os
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from detectron2.data import transforms as T
from detectron2.structures import Instances

from .description import instances_from_outputs, metadata_from_description, postprocess_detections, read_description

__all__ = ["OnnxPredictor", "import_onnxruntime"]


def import_onnxruntime():
    """``onnxruntime``, or an ImportError that says how to install it."""
    try:
        import onnxruntime
    except ImportError as e:
        raise ImportError(
            "Running an exported ONNX model needs ONNX Runtime, an optional dependency of iou_aware: "
            "pip install 'iou_aware[onnx]' (or pip install onnxruntime)"
        ) from e
    return onnxruntime


class OnnxPredictor:
    """Runs an exported ONNX model on one image, as ``DefaultPredictor`` runs the eager one:

    1. takes a BGR image (numpy, H x W x 3, uint8) of any size;
    2. converts it to the channel order of the model (``INPUT.FORMAT``) and applies the test-time
       ``ResizeShortestEdge`` (``INPUT.MIN_SIZE_TEST`` / ``MAX_SIZE_TEST``), both saved at export;
    3. runs the graph with ONNX Runtime;
    4. returns ``{"instances": Instances}`` in the coordinates of the original image, as the eager
       model's post-processing does (:func:`~iou_aware.deployment.postprocess_detections`):
       ``pred_boxes``, ``scores``, ``pred_classes``, and as the model has them ``pred_masks``
       (R, H, W) bool (LSNet's contours filled, Mask R-CNN's masks pasted), ``pred_polygons``,
       ``pred_keypoints`` (R, K, 3).

    Attributes:
        description: the export's description (``export.json``).
        metadata: Detectron2 ``Metadata`` of the test dataset (class names, colours, keypoint
            names and connections) for Detectron2's ``Visualizer``.
        session: the ``onnxruntime.InferenceSession``.
    """

    def __init__(
        self,
        export_dir: str,
        score_threshold: float = 0.0,
        providers: Optional[Sequence[str]] = None,
        session_options=None,
    ):
        """
        Args:
            export_dir: the ``--output`` folder of ``tools/export.py --format onnx`` (``model.onnx``
                and ``export.json``).
            score_threshold: detections scoring below it are dropped (after the model's own
                threshold, NMS and detection cap, which are part of the graph).
            providers: ONNX Runtime execution providers; default: the CPU.
            session_options: an ``onnxruntime.SessionOptions``, e.g. to set the number of threads.
        """
        onnxruntime = import_onnxruntime()
        self.description = read_description(export_dir)
        if self.description.get("format", "onnx") != "onnx":
            raise ValueError(
                f"{export_dir} holds a {self.description['format']} export; export with --format onnx for OnnxPredictor"
            )
        path = os.path.join(export_dir, self.description["model_file"])
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path} not found (named by {export_dir}/export.json)")
        self.session = onnxruntime.InferenceSession(
            path, session_options, providers=list(providers or ["CPUExecutionProvider"])
        )
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ValueError(f"{path} takes {len(inputs)} inputs; an exported detector takes one image")
        self.input_name = inputs[0].name
        self.output_names: List[str] = [o.name for o in self.session.get_outputs()]
        described = [o["name"] for o in self.description["outputs"]]
        if len(described) != len(self.output_names):
            raise ValueError(f"{path} has {len(self.output_names)} outputs, export.json describes {len(described)}")
        # By name where the graph names its outputs as the description does, else by position.
        self._order = (
            [self.output_names.index(n) for n in described]
            if sorted(described) == sorted(self.output_names)
            else list(range(len(described)))
        )
        spec = self.description["input"]
        self.input_format = spec.get("channel_order", "BGR")
        if self.input_format not in ("BGR", "RGB"):
            raise ValueError(f"export.json: channel_order {self.input_format!r}; BGR and RGB are supported")
        resize = spec["resize"]
        self.aug = T.ResizeShortestEdge([resize["min_size"], resize["min_size"]], resize["max_size"])
        self.score_threshold = score_threshold
        self.metadata = metadata_from_description(self.description)

    def preprocess(self, original_image: np.ndarray) -> np.ndarray:
        """The graph's input for a BGR image: (3, h, w) float32 in the model's channel order,
        resized as ``DefaultPredictor`` resizes."""
        if not isinstance(original_image, np.ndarray) or original_image.ndim != 3 or original_image.shape[2] != 3:
            shape = getattr(original_image, "shape", None)
            raise ValueError(
                f"OnnxPredictor takes a BGR image as a numpy array (H, W, 3), got {type(original_image).__name__} {shape}"
            )
        if original_image.dtype != np.uint8:
            raise ValueError(f"OnnxPredictor takes a uint8 image (as cv2.imread reads it), got {original_image.dtype}")
        if self.input_format == "RGB":
            original_image = original_image[:, :, ::-1]
        image = self.aug.get_transform(original_image).apply_image(original_image)
        return np.ascontiguousarray(image.astype("float32").transpose(2, 0, 1))

    def run(self, image: np.ndarray) -> Instances:
        """Raw detections of a preprocessed (3, h, w) image, in its coordinates."""
        outputs = self.session.run(None, {self.input_name: image})
        return instances_from_outputs(self.description, [outputs[i] for i in self._order], image.shape[-2:])

    def __call__(self, original_image: np.ndarray) -> Dict[str, Instances]:
        """
        Args:
            original_image: (H, W, 3) uint8, BGR (as ``cv2.imread`` reads it).
        Returns:
            {"instances": Instances of size (H, W)}, as ``DefaultPredictor``.
        """
        image = self.preprocess(original_image)
        height, width = original_image.shape[:2]
        with torch.no_grad():
            instances = self.run(image)
            instances = postprocess_detections(instances, self.description, tuple(image.shape[-2:]), (height, width))
        if self.score_threshold > 0:
            instances = instances[instances.scores >= self.score_threshold]
        return {"instances": instances}
