#!/usr/bin/env python
"""Export a detection model to TorchScript or ONNX by tracing, then check it against the eager model.

    python tools/export.py --config-file configs/Shapes/iou_aware_retinanet_slim_R_FPN.yaml \
        --output export/ MODEL.WEIGHTS output/shapes/iou_aware_retinanet_slim_R_FPN/model_final.pth
    python tools/export.py --config-file <cfg> --output <dir> --sample-image img.png --device cuda \
        MODEL.WEIGHTS <checkpoint.pth> [KEY VALUE ...]
    python tools/export.py --format onnx --config-file <cfg> --output export/ MODEL.WEIGHTS <pth>

Works for our meta-architectures (IoUAwareRetinaNet, GFL, GFLV2) and for Detectron2's own
(``detectron2://<path in the model zoo>`` configs too). The model is traced with Detectron2's
``TracingAdapter``: the traced module takes one CHW image tensor (the model's input format, already
resized) and returns a flat tuple of tensors; the adapter's ``outputs_schema`` rebuilds the
``Instances`` from it. Writes ``<output>/model.ts`` (``torch.jit.load`` it) or, with ``--format
onnx``, ``<output>/model.onnx`` (``torch.onnx.export`` of the same adapter, TorchScript-based
exporter, opset 17: ``GridSample`` for the deformable convs, ``NonMaxSuppression``; input "image"
(3, height, width) with dynamic height and width; run it with ONNX Runtime), and, when it can be
pickled, ``<output>/outputs_schema.pkl``.

What is traced (the ``inference_func`` given to TracingAdapter):
  * GeneralizedRCNN: ``model.inference(inputs, do_postprocess=False)`` (Detectron2's own choice).
  * Dense detectors (RetinaNet, IoUAwareRetinaNet, GFL, GFLV2; they have no ``.inference``):
    ``[r["instances"] for r in model(inputs)]`` in eval mode. The inputs hold no "height"/"width",
    so ``detector_postprocess`` rescales by 1: boxes are in the coordinates of the input tensor,
    as with GeneralizedRCNN's ``do_postprocess=False``.

The input image is ``--sample-image`` or else the first image of the config's first test dataset,
read in ``INPUT.FORMAT`` and resized with the test-time ResizeShortestEdge as DefaultPredictor does.

Check: the eager model and the reloaded export (TorchScript module or ONNX Runtime session) run on (1) the tracing image and (2) a
second image of another size (the same picture resized to ``--image-size`` shortest edge, or 3/4
of the tracing size if that is the same size). A trace records one execution: sizes that the model
computes with Python ints (e.g. the per-level top-k count of the dense detectors, ``min(topk, M)``)
are frozen into the graph, so the second check can fail where the first one passes; both are
reported. Pass: same number of detections, and each eager detection has its own exported one of the
same class with the box within 1e-3 px and the score within 1e-5 (in order, or, where scores tie
within that tolerance, in another order: backends break ties differently). Exit status: 0 if every
check passed, 2 with a "MISMATCH" line if one did not, 1 if the model cannot be exported ("cannot
trace <meta-architecture>: <reason>", which names the unsupported op for ONNX) or the arguments
are wrong.
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
from iou_aware.data import add_user_dataset_arguments, register_user_datasets
from iou_aware.model_zoo import resolve_config_file

FORMATS = ("torchscript", "onnx")
ONNX_OPSET = 17  # GridSample (deformable convs) needs 16
BOX_TOLERANCE = 1e-3  # pixels
SCORE_TOLERANCE = 1e-5


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, help="config file, or detectron2://<model zoo path>")
    parser.add_argument("--output", required=True, help="folder for model.ts / model.onnx")
    parser.add_argument("--format", choices=FORMATS, default="torchscript", help="torchscript (default) or onnx")
    parser.add_argument("--sample-image", default="", help="image to trace with (default: first test image)")
    parser.add_argument(
        "--image-size", type=int, default=256, help="shortest edge of the second, differently-sized check image"
    )
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument(
        "--time", type=int, default=0, metavar="N",
        help="also time N runs of the eager and the exported model on the tracing image (median ms)",
    )  # fmt: skip
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides (MODEL.WEIGHTS <pth>)")
    add_user_dataset_arguments(parser)
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
    """Same count; each eager detection matched to its own exported one of the same class with the
    box within BOX_TOLERANCE px and the score within SCORE_TOLERANCE (in order; detections whose
    scores tie within the tolerance may come in another order). ``max_*_diff`` are over the matches."""
    result = {
        "num_detections": len(eager),
        "traced_num_detections": len(traced),
        "max_box_diff": float("inf"),
        "max_score_diff": float("inf"),
        "classes_equal": False,
    }
    if len(eager) == len(traced):
        order = match_detections(eager, traced)
        if order is not None:
            traced = traced[order]
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


def match_detections(eager: Instances, traced: Instances) -> Optional[torch.Tensor]:
    """Indices into ``traced`` pairing each eager detection with an equal one (same class, box and
    score within tolerance), each used once, preferring the same position; None if some eager
    detection has no free equal partner (then the detections are compared in their own order)."""
    boxes = (eager.pred_boxes.tensor[:, None].cpu() - traced.pred_boxes.tensor[None].cpu()).abs().amax(dim=2)
    scores = (eager.scores[:, None].cpu() - traced.scores[None].cpu()).abs()
    classes = eager.pred_classes[:, None].cpu() == traced.pred_classes[None].cpu()
    equal = (boxes <= BOX_TOLERANCE) & (scores <= SCORE_TOLERANCE) & classes  # (E, T)
    taken = torch.zeros(len(traced), dtype=torch.bool)
    order = []
    for i in range(len(eager)):  # at most DETECTIONS_PER_IMAGE rows; the candidates are few
        candidates = torch.nonzero(equal[i] & ~taken).flatten()
        if len(candidates) == 0:
            return None
        j = i if i < len(traced) and bool(equal[i, i] and not taken[i]) else int(candidates[0])
        taken[j] = True
        order.append(j)
    return torch.tensor(order, dtype=torch.int64)


def check(model, inference_func, run_exported, outputs_schema, image: torch.Tensor) -> Dict:
    """Eager model vs the exported one (``run_exported``: image -> flat tuple of tensors) on one image."""
    with torch.no_grad():
        eager = inference_func(model, [{"image": image}])[0]
        traced = outputs_schema(run_exported(image))[0]
    return compare(eager, traced)


def export_torchscript(traceable, image: torch.Tensor, output_dir: str, device: str):
    """Trace to ``model.ts``; returns its path and a runner of the reloaded module."""
    path = os.path.join(output_dir, "model.ts")
    with torch.no_grad():
        # check_trace=False: the checks compare against the eager model, on two sizes.
        traced = torch.jit.trace(traceable, (image,), check_trace=False)
    torch.jit.save(traced, path)
    scripted = torch.jit.load(path, map_location=device)
    return path, scripted


def onnx_unsupported_reason(model) -> Optional[str]:
    """Why ``model`` cannot go to ONNX, checked before exporting (the exporter would kill the process)."""
    landmark_sets = getattr(getattr(model, "head", None), "landmark_sets", {})
    tasks = sorted(set(landmark_sets) & {"contour", "keypoint"})
    if tasks:
        return (
            f"LSNet's {'/'.join(tasks)} landmarks: torch {torch.__version__}'s TorchScript-based ONNX exporter crashes "
            "(floating point exception) in the shape inference of aten::reshape (onnx::Reshape) on them; "
            "use --format torchscript"
        )
    return None


def export_onnx(traceable, image: torch.Tensor, output_dir: str):
    """Export to ``model.onnx`` (input "image", dynamic height and width); returns its path and a
    runner of an ONNX Runtime session on it (CPU)."""
    reason = onnx_unsupported_reason(traceable.model)
    if reason:
        raise SystemExit(f"cannot export {type(traceable.model).__name__} to ONNX: {reason}")
    try:
        import onnxruntime
    except ImportError as e:
        raise SystemExit("--format onnx needs onnx and onnxruntime: pip install onnx onnxruntime") from e
    path = os.path.join(output_dir, "model.onnx")
    with torch.no_grad():
        torch.onnx.export(
            traceable, (image,), path, dynamo=False, opset_version=ONNX_OPSET,
            input_names=["image"], dynamic_axes={"image": {1: "height", 2: "width"}},
        )  # fmt: skip
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(image):
        return tuple(torch.from_numpy(o) for o in session.run(None, {name: image.detach().cpu().numpy()}))

    return path, run


def time_models(model, inference_func, run_exported, image: torch.Tensor, repeats: int) -> Dict[str, float]:
    """Median wall time (ms) of the eager model and of the export on ``image``, interleaved, after
    one warm-up run of each."""
    import time

    def once(fn):
        start = time.perf_counter()
        with torch.no_grad():
            fn()
        if image.is_cuda:
            torch.cuda.synchronize()
        return 1000 * (time.perf_counter() - start)

    eager = lambda: inference_func(model, [{"image": image}])  # noqa: E731
    exported = lambda: run_exported(image)  # noqa: E731
    once(eager), once(exported)
    times = [(once(eager), once(exported)) for _ in range(repeats)]
    return {
        "eager_ms": float(np.median([t[0] for t in times])),
        "exported_ms": float(np.median([t[1] for t in times])),
    }


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
    register_user_datasets(args)
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
    # eval(): the adapter is a new module in training mode, and the ONNX exporter applies its mode.
    traceable = TracingAdapter(model, [{"image": image}], inference_func).eval()
    try:
        if args.format == "onnx":
            path, run_exported = export_onnx(traceable, image, args.output)
        else:
            path, run_exported = export_torchscript(traceable, image, args.output, cfg.MODEL.DEVICE)
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001  (any failure of the tracer / exporter is reported the same way)
        raise SystemExit(f"cannot trace {meta_arch}: {type(e).__name__}: {e}".rstrip())
    print(f"Exported {meta_arch} ({args.format}) on {sample} ({'x'.join(map(str, image.shape[-2:]))}); saved {path}")
    try:
        with open(os.path.join(args.output, "outputs_schema.pkl"), "wb") as f:
            pickle.dump(traceable.outputs_schema, f)
    except Exception as e:  # noqa: BLE001  (optional: the schema is a convenience)
        print(f"outputs_schema not saved: {e}")

    same = check(model, inference_func, run_exported, traceable.outputs_schema, image)
    print(report("same image as the trace", image, same))

    # Second check: another size, to catch sizes baked into the trace.
    size = min(image.shape[-2:])
    short_edge = args.image_size if args.image_size != size else max(32, (3 * size) // 4)
    other_image = load_image(cfg, sample, short_edge).to(cfg.MODEL.DEVICE)
    other = None
    if tuple(other_image.shape[-2:]) != tuple(image.shape[-2:]):
        try:
            other = check(model, inference_func, run_exported, traceable.outputs_schema, other_image)
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

    timing = time_models(model, inference_func, run_exported, image, args.time) if args.time > 0 else {}
    if timing:
        print(
            f"Latency on {'x'.join(map(str, image.shape[-2:]))} ({cfg.MODEL.DEVICE}, median of {args.time}): eager "
            f"{timing['eager_ms']:.1f} ms, {args.format} {timing['exported_ms']:.1f} ms "
            f"({timing['exported_ms'] / timing['eager_ms']:.2f}x)"
        )
    result = {
        **timing,
        "path": path,
        "format": args.format,
        "num_detections": same["num_detections"],
        "max_box_diff": same["max_box_diff"],
        "max_score_diff": same["max_score_diff"],
        "same_image_ok": same["ok"],
        "other_image_ok": None if other is None else other["ok"],
        "other_image": other,
        "other_image_size": tuple(other_image.shape[-2:]) if other is not None else None,
    }
    if not same["ok"]:
        print("MISMATCH: the exported model differs from the eager model on the image it was traced with")
    if other is not None and not other["ok"]:
        print(
            "MISMATCH: the exported model differs from the eager model on an image of another size "
            f"({'x'.join(map(str, other_image.shape[-2:]))}), most likely because the trace froze sizes computed "
            "on the tracing image (e.g. the per-level top-k count); use it only on inputs of size "
            f"{'x'.join(map(str, image.shape[-2:]))}"
        )
    return result


def exit_status(result: Dict) -> int:
    return 0 if result["same_image_ok"] and result["other_image_ok"] is not False else 2


if __name__ == "__main__":
    sys.exit(exit_status(main()))
