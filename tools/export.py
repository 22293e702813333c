#!/usr/bin/env python
"""Export a detection model to TorchScript by tracing, then check the traced model against the eager one.

    python tools/export.py --config-file configs/Shapes/iou_aware_retinanet_slim_R_FPN.yaml \
        --output export/ MODEL.WEIGHTS output/shapes/iou_aware_retinanet_slim_R_FPN/model_final.pth
    python tools/export.py --config-file <cfg> --output <dir> --sample-image img.png --device cuda \
        MODEL.WEIGHTS <checkpoint.pth> [KEY VALUE ...]

Works for our meta-architectures (IoUAwareRetinaNet, GFL, GFLV2) and for Detectron2's own
(``detectron2://<path in the model zoo>`` configs too). The model is traced with Detectron2's
``TracingAdapter``: the traced module takes one CHW image tensor (the model's input format, already
resized) and returns a flat tuple of tensors; the adapter's ``outputs_schema`` rebuilds the
``Instances`` from it. Writes ``<output>/model.ts`` (``torch.jit.load`` it) and, when it can be
pickled, ``<output>/outputs_schema.pkl``.

What is traced (the ``inference_func`` given to TracingAdapter):
  * GeneralizedRCNN: ``model.inference(inputs, do_postprocess=False)`` (Detectron2's own choice).
  * Dense detectors (RetinaNet, IoUAwareRetinaNet, GFL, GFLV2; they have no ``.inference``):
    ``[r["instances"] for r in model(inputs)]`` in eval mode. The inputs hold no "height"/"width",
    so ``detector_postprocess`` rescales by 1: boxes are in the coordinates of the input tensor,
    as with GeneralizedRCNN's ``do_postprocess=False``.

The input image is ``--sample-image`` or else the first image of the config's first test dataset,
read in ``INPUT.FORMAT`` and resized with the test-time ResizeShortestEdge as DefaultPredictor does.

Check: the eager model and the reloaded TorchScript module run on (1) the tracing image and (2) a
second image of another size (the same picture resized to ``--image-size`` shortest edge, or 3/4
of the tracing size if that is the same size). A trace records one execution: sizes that the model
computes with Python ints (e.g. the per-level top-k count of the dense detectors, ``min(topk, M)``)
are frozen into the graph, so the second check can fail where the first one passes; both are
reported. Pass: same number of detections, same classes, boxes within 1e-3 px, scores within 1e-5.
Exit status: 0 if every check passed, 2 with a "MISMATCH" line if one did not, 1 if the model
cannot be traced ("cannot trace <meta-architecture>: <reason>") or the arguments are wrong.
"""
import argparse
import os
import pickle
import sys
from typing import Dict, Optional

import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog
from detectron2.data import detection_utils
from detectron2.data import transforms as T
from detectron2.export import TracingAdapter
from detectron2.modeling import GeneralizedRCNN, build_model
from detectron2.structures import Instances

import iou_aware  # noqa: F401  (registers the package's models and datasets)
from iou_aware.config import add_iou_aware_config
from iou_aware.data import add_register_coco_argument, register_coco_datasets
from iou_aware.model_zoo import resolve_config_file

BOX_TOLERANCE = 1e-3  # pixels
SCORE_TOLERANCE = 1e-5


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, help="config file, or detectron2://<model zoo path>")
    parser.add_argument("--output", required=True, help="folder for model.ts")
    parser.add_argument("--sample-image", default="", help="image to trace with (default: first test image)")
    parser.add_argument(
        "--image-size", type=int, default=256, help="shortest edge of the second, differently-sized check image"
    )
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides (MODEL.WEIGHTS <pth>)")
    add_register_coco_argument(parser)
    return parser


def setup_cfg(args):
    """Config from the file and the overrides; checks MODEL.WEIGHTS and the device before any work."""
    cfg = get_cfg()
    add_iou_aware_config(cfg)
    cfg.merge_from_file(resolve_config_file(args.config_file))
    cfg.merge_from_list(args.opts)
    weights = cfg.MODEL.WEIGHTS
    if not weights:
        raise SystemExit("MODEL.WEIGHTS is empty: pass MODEL.WEIGHTS <checkpoint.pth>")
    if "://" not in weights and not os.path.isfile(weights):
        raise SystemExit(f"MODEL.WEIGHTS file not found: {weights}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device available")
    cfg.MODEL.DEVICE = args.device
    cfg.freeze()
    return cfg


def load_image(cfg, path: str, short_edge: Optional[int] = None) -> torch.Tensor:
    """CHW float tensor as DefaultPredictor feeds the model: read in INPUT.FORMAT, resized with the
    test ResizeShortestEdge (or with ``short_edge`` for the second check image)."""
    image = detection_utils.read_image(path, format=cfg.INPUT.FORMAT)
    if short_edge is None:
        resize = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2, cfg.INPUT.MAX_SIZE_TEST)
    else:
        resize = T.ResizeShortestEdge([short_edge] * 2, max(cfg.INPUT.MAX_SIZE_TEST, 4 * short_edge))
    image = resize.get_transform(image).apply_image(image)
    return torch.as_tensor(np.ascontiguousarray(image.astype("float32").transpose(2, 0, 1)))


def inference_func_for(model):
    """What TracingAdapter calls: (model, inputs) -> list[Instances] (see the module docstring)."""
    if isinstance(model, GeneralizedRCNN):
        return lambda model, inputs: model.inference(inputs, do_postprocess=False)

    def dense_inference(model, inputs):
        outputs = model(inputs)
        if not (isinstance(outputs, list) and all(isinstance(r, dict) and "instances" in r for r in outputs)):
            raise TypeError(f"the model returned {type(outputs).__name__}, not a list of dicts with 'instances'")
        return [r["instances"] for r in outputs]

    return dense_inference


def compare(eager: Instances, traced: Instances) -> Dict:
    """Same count, same classes, boxes within BOX_TOLERANCE px and scores within SCORE_TOLERANCE."""
    result = {
        "num_detections": len(eager),
        "traced_num_detections": len(traced),
        "max_box_diff": float("inf"),
        "max_score_diff": float("inf"),
        "classes_equal": False,
    }
    if len(eager) == len(traced):
        if len(eager):
            boxes = (eager.pred_boxes.tensor - traced.pred_boxes.tensor.to(eager.pred_boxes.device)).abs()
            scores = (eager.scores - traced.scores.to(eager.scores.device)).abs()
            result["max_box_diff"] = float(boxes.max())
            result["max_score_diff"] = float(scores.max())
        else:
            result["max_box_diff"] = result["max_score_diff"] = 0.0
        result["classes_equal"] = bool(torch.equal(eager.pred_classes.cpu(), traced.pred_classes.cpu()))
    result["ok"] = bool(
        result["classes_equal"]
        and result["max_box_diff"] <= BOX_TOLERANCE
        and result["max_score_diff"] <= SCORE_TOLERANCE
    )
    return result


def check(model, inference_func, scripted, outputs_schema, image: torch.Tensor) -> Dict:
    """Eager model vs the TorchScript module on one image."""
    with torch.no_grad():
        eager = inference_func(model, [{"image": image}])[0]
        traced = outputs_schema(scripted(image))[0]
    return compare(eager, traced)


def report(name: str, image: torch.Tensor, result: Dict) -> str:
    size = "x".join(str(s) for s in image.shape[-2:])
    if result["num_detections"] != result["traced_num_detections"]:
        detail = f"{result['num_detections']} detections eager vs {result['traced_num_detections']} traced"
    else:
        detail = (
            f"{result['num_detections']} detections, max |box diff| {result['max_box_diff']:.3g} px, "
            f"max |score diff| {result['max_score_diff']:.3g}, classes {'equal' if result['classes_equal'] else 'DIFFER'}"
        )
    status = "ok" if result["ok"] else "MISMATCH"
    return f"{name} ({size}): {detail}: {status}"


def main(argv=None):
    args = get_parser().parse_args(argv)
    register_coco_datasets(args.register_coco)
    cfg = setup_cfg(args)
    meta_arch = cfg.MODEL.META_ARCHITECTURE

    sample = args.sample_image
    if not sample:
        if not cfg.DATASETS.TEST:
            raise SystemExit("No --sample-image and no DATASETS.TEST to take an image from")
        sample = DatasetCatalog.get(cfg.DATASETS.TEST[0])[0]["file_name"]
    elif not os.path.isfile(sample):
        raise SystemExit(f"--sample-image not found: {sample}")

    model = build_model(cfg)
    DetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    model.eval()

    image = load_image(cfg, sample).to(cfg.MODEL.DEVICE)
    inference_func = inference_func_for(model)
    os.makedirs(args.output, exist_ok=True)
    path = os.path.join(args.output, "model.ts")
    try:
        traceable = TracingAdapter(model, [{"image": image}], inference_func)
        with torch.no_grad():
            # check_trace=False: the checks below compare against the eager model, on two sizes.
            traced = torch.jit.trace(traceable, (image,), check_trace=False)
        torch.jit.save(traced, path)
    except Exception as e:  # noqa: BLE001  (any failure of the tracer is reported the same way)
        raise SystemExit(f"cannot trace {meta_arch}: {type(e).__name__}: {e}".rstrip())
    print(f"Traced {meta_arch} on {sample} ({'x'.join(map(str, image.shape[-2:]))}); saved {path}")
    try:
        with open(os.path.join(args.output, "outputs_schema.pkl"), "wb") as f:
            pickle.dump(traceable.outputs_schema, f)
    except Exception as e:  # noqa: BLE001  (optional: the schema is a convenience)
        print(f"outputs_schema not saved: {e}")

    scripted = torch.jit.load(path, map_location=cfg.MODEL.DEVICE)
    same = check(model, inference_func, scripted, traceable.outputs_schema, image)
    print(report("same image as the trace", image, same))

    # Second check: another size, to catch sizes baked into the trace.
    size = min(image.shape[-2:])
    short_edge = args.image_size if args.image_size != size else max(32, (3 * size) // 4)
    other_image = load_image(cfg, sample, short_edge).to(cfg.MODEL.DEVICE)
    other = None
    if tuple(other_image.shape[-2:]) != tuple(image.shape[-2:]):
        try:
            other = check(model, inference_func, scripted, traceable.outputs_schema, other_image)
        except Exception as e:  # noqa: BLE001  (a traced graph may fail outright on another size)
            print(f"other size ({'x'.join(map(str, other_image.shape[-2:]))}): traced module failed: {e}")
            other = {
                "num_detections": None,
                "traced_num_detections": None,
                "max_box_diff": float("inf"),
                "max_score_diff": float("inf"),
                "classes_equal": False,
                "ok": False,
                "error": f"{type(e).__name__}: {e}",
            }
        if "error" not in other:
            print(report("another image size", other_image, other))
    else:
        print("No image of another size to check.")

    result = {
        "path": path,
        "num_detections": same["num_detections"],
        "max_box_diff": same["max_box_diff"],
        "max_score_diff": same["max_score_diff"],
        "same_image_ok": same["ok"],
        "other_image_ok": None if other is None else other["ok"],
        "other_image": other,
        "other_image_size": tuple(other_image.shape[-2:]) if other is not None else None,
    }
    if not same["ok"]:
        print("MISMATCH: the traced model differs from the eager model on the image it was traced with")
    if other is not None and not other["ok"]:
        print(
            "MISMATCH: the traced model differs from the eager model on an image of another size "
            f"({'x'.join(map(str, other_image.shape[-2:]))}), most likely because the trace froze sizes computed "
            "on the tracing image (e.g. the per-level top-k count); use it only on inputs of size "
            f"{'x'.join(map(str, image.shape[-2:]))}"
        )
    return result


def exit_status(result: Dict) -> int:
    return 0 if result["same_image_ok"] and result["other_image_ok"] is not False else 2


if __name__ == "__main__":
    sys.exit(exit_status(main()))
