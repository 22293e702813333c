#!/usr/bin/env python
"""Export a detection model to TorchScript or ONNX by tracing, then check it against the eager model.

    python tools/export.py --config-file configs/Shapes/iou_aware_retinanet_slim_R_FPN.yaml \
        --output export/ MODEL.WEIGHTS output/shapes/iou_aware_retinanet_slim_R_FPN/model_final.pth
    python tools/export.py --config-file <cfg> --output <dir> --sample-image img.png --device cuda \
        MODEL.WEIGHTS <checkpoint.pth> [KEY VALUE ...]
    python tools/export.py --format onnx --config-file <cfg> --output export/ MODEL.WEIGHTS <pth>

Works for every meta-architecture of the package (IoUAwareRetinaNet, GFL, GFLV2, LSNet for boxes,
contours and keypoints, GeneralizedRCNN with IoULossROIHeads) and for Detectron2's RetinaNet and
GeneralizedRCNN (``detectron2://<path in the model zoo>`` configs too). The model is traced with
Detectron2's ``TracingAdapter``: the traced module takes one CHW float image tensor (the model's
input format, already resized by the test-time ResizeShortestEdge) and returns a flat tuple of
tensors, the fields of the detections. Writes ``<output>/model.ts`` (``torch.jit.load`` it) or,
with ``--format onnx``, ``<output>/model.onnx`` (``torch.onnx.export`` of the same adapter,
TorchScript-based exporter, opset 17: ``GridSample`` for the deformable convs,
``NonMaxSuppression``; input "image" (3, height, width) with dynamic height and width, outputs
named after the fields; run it with ONNX Runtime or ``iou_aware.deployment.OnnxPredictor``), and
beside it ``<output>/export.json``, which describes the input (channel order, test-time resize),
the outputs in order, the post-processing to the original image and the test dataset's class and
keypoint names (``iou_aware.deployment.description``), and, when it can be pickled,
``<output>/outputs_schema.pkl`` (Detectron2's schema of the outputs).

What is traced (``iou_aware.deployment.traceable_inference``): the raw detections of one image, in
the coordinates of the input tensor, before any rescaling to the original image:
  * GeneralizedRCNN: ``model.inference(inputs, do_postprocess=False)`` (Detectron2's own choice).
  * Dense detectors (RetinaNet, IoUAwareRetinaNet, GFL, GFLV2, LSNet): normalization, backbone, head
    and ``forward_inference``. LSNet's contours come out as ``pred_polygons``, filled into masks
    after the graph (``iou_aware.deployment.postprocess_detections``).

The sample image is ``--sample-image`` or else the first image of the config's first test dataset,
read in ``INPUT.FORMAT`` and resized with the test-time ResizeShortestEdge as DefaultPredictor does.

Check: the eager model and the reloaded export (TorchScript module or ONNX Runtime session) run on
(1) the tracing image, (2) a second image of another size (the same picture resized to
``--image-size`` shortest edge, or 3/4 of the tracing size if that is the same size), (3) a blank
image (uniform gray) and (4) each ``--check-image``. A trace records one execution, so a graph
that froze a size or a branch of the tracing image fails on another one: a different size, no
detection at all, or as many as the detection cap. Pass: same number of detections, and each eager
detection has its own exported one of the same class with the box within 1e-3 px, the score within
1e-5 and every other float field (keypoints, polygons, IoUs, mask probabilities) within 1e-3 (in
order, or, where scores tie within the tolerance, in another order, and where a cut of the top-k,
of NMS or of the detection cap falls inside a tie, other detections of the same class and score:
backends break ties differently). Exit status: 0 if every check passed, 2 with a "MISMATCH" line
if one did not, 1 if the model cannot be exported ("cannot trace <meta-architecture>: <reason>")
or the arguments are wrong.
"""

import argparse
import os
import pickle
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog, detection_utils
from detectron2.data import transforms as T
from detectron2.export import TracingAdapter
from detectron2.modeling import build_model
from detectron2.structures import Instances

import iou_aware  # noqa: F401  (registers the package's models and datasets)
from iou_aware.config import add_iou_aware_config
from iou_aware.data import add_user_dataset_arguments, register_user_datasets
from iou_aware.deployment import (
    check_class_names,
    describe_export,
    instances_from_outputs,
    traceable_inference,
    write_description,
)
from iou_aware.model_zoo import resolve_config_file

FORMATS = ("torchscript", "onnx")
ONNX_OPSET = 17  # GridSample (deformable convs) needs 16
BOX_TOLERANCE = 1e-3  # pixels
SCORE_TOLERANCE = 1e-5
FIELD_TOLERANCE = 1e-3  # other float fields: keypoints and polygons (px), IoUs, mask probabilities
BLANK_VALUE = 128.0  # the blank check image: uniform gray
COMPARED_FIELDS = ("pred_boxes", "scores", "pred_classes")


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, help="config file, or detectron2://<model zoo path>")
    parser.add_argument("--output", required=True, help="folder for model.ts / model.onnx and export.json")
    parser.add_argument("--format", choices=FORMATS, default="torchscript", help="torchscript (default) or onnx")
    parser.add_argument("--sample-image", default="", help="image to trace with (default: first test image)")
    parser.add_argument(
        "--image-size", type=int, default=256, help="shortest edge of the second, differently-sized check image"
    )
    parser.add_argument(
        "--check-image", action="append", default=[], metavar="PATH",
        help="another image to check the export on (test-time resize); repeatable",
    )  # fmt: skip
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
    return traceable_inference(model)


def compare(eager: Instances, traced: Instances) -> Dict:
    """Same count; each eager detection matched to its own exported one of the same class with the
    box within BOX_TOLERANCE px and the score within SCORE_TOLERANCE (in order; detections whose
    scores tie within the tolerance may come in another order, and where the cut of the top-k or
    of the detection cap, or NMS among equal scores, falls inside a tie, the exported model may keep
    other detections of that score and class: those count as ``tie_substitutions``); then every
    other float field of both (keypoints, polygons, ...) within FIELD_TOLERANCE. ``max_*_diff``
    are over the matches."""
    result = {
        "num_detections": len(eager),
        "traced_num_detections": len(traced),
        "max_box_diff": float("inf"),
        "max_score_diff": float("inf"),
        "classes_equal": False,
        "max_field_diff": {},
        "tie_substitutions": 0,
    }
    if len(eager) == len(traced):
        order, substituted = match_detections(eager, traced)
        exact = torch.ones(len(eager), dtype=torch.bool)
        if order is not None:
            traced = traced[order]
            exact[substituted] = False
            result["tie_substitutions"] = len(substituted)
        scores = (eager.scores - traced.scores.to(eager.scores.device)).abs()
        result["max_score_diff"] = float(scores.max()) if len(eager) else 0.0
        result["classes_equal"] = bool(torch.equal(eager.pred_classes.cpu(), traced.pred_classes.cpu()))
        eager, traced = eager[exact.to(eager.scores.device)], traced[exact.to(traced.scores.device)]
        if len(eager):
            boxes = (eager.pred_boxes.tensor - traced.pred_boxes.tensor.to(eager.pred_boxes.device)).abs()
            result["max_box_diff"] = float(boxes.max())
        else:
            result["max_box_diff"] = 0.0
        result["max_field_diff"] = other_field_differences(eager, traced)
    result["ok"] = bool(
        result["classes_equal"]
        and result["max_box_diff"] <= BOX_TOLERANCE
        and result["max_score_diff"] <= SCORE_TOLERANCE
        and all(d <= FIELD_TOLERANCE for d in result["max_field_diff"].values())
    )
    return result


def other_field_differences(eager: Instances, traced: Instances) -> Dict[str, float]:
    """Max |difference| of each float tensor field other than boxes and scores (inf where the
    exported model lacks the field or gives another shape)."""
    diffs = {}
    for name, value in eager.get_fields().items():
        if name in COMPARED_FIELDS or not isinstance(value, torch.Tensor) or not value.is_floating_point():
            continue
        other = traced.get(name) if traced.has(name) else None
        if not isinstance(other, torch.Tensor) or other.shape != value.shape:
            diffs[name] = float("inf")
        elif value.numel():
            diffs[name] = float((value.cpu() - other.cpu().to(value.dtype)).abs().max())
        else:
            diffs[name] = 0.0
    return diffs


def match_detections(eager: Instances, traced: Instances):
    """Indices into ``traced`` pairing each eager detection with an equal one (same class, box and
    score within tolerance), each used once, preferring the same position; an eager detection
    whose score and class tie with another eager detection's and that has no equal partner takes
    a free exported detection of that class and score (a substitution inside the tie). Returns
    (order, the positions of the substitutions), or (None, []) if some eager detection has no
    partner (then the detections are compared in their own order)."""
    boxes = (eager.pred_boxes.tensor[:, None].cpu() - traced.pred_boxes.tensor[None].cpu()).abs().amax(dim=2)
    scores = (eager.scores[:, None].cpu() - traced.scores[None].cpu()).abs()
    classes = eager.pred_classes[:, None].cpu() == traced.pred_classes[None].cpu()
    same_score = (scores <= SCORE_TOLERANCE) & classes  # (E, T)
    equal = (boxes <= BOX_TOLERANCE) & same_score
    eager_scores, eager_classes = eager.scores.cpu(), eager.pred_classes.cpu()
    ties = ((eager_scores[:, None] - eager_scores[None]).abs() <= SCORE_TOLERANCE) & (
        eager_classes[:, None] == eager_classes[None]
    )
    tied = ties.sum(dim=1) > 1
    taken = torch.zeros(len(traced), dtype=torch.bool)
    order = [-1] * len(eager)
    for i in range(len(eager)):  # at most DETECTIONS_PER_IMAGE rows; the candidates are few
        candidates = torch.nonzero(equal[i] & ~taken).flatten()
        if len(candidates):
            j = i if i < len(traced) and bool(equal[i, i] and not taken[i]) else int(candidates[0])
            taken[j] = True
            order[i] = j
    substituted = []
    for i in range(len(eager)):
        if order[i] >= 0:
            continue
        candidates = torch.nonzero(same_score[i] & ~taken).flatten() if tied[i] else []
        if len(candidates) == 0:
            return None, []
        order[i] = int(candidates[0])
        taken[order[i]] = True
        substituted.append(i)
    return torch.tensor(order, dtype=torch.int64), substituted


def check(model, inference_func, run_exported, description, image: torch.Tensor) -> Dict:
    """Eager model vs the exported one (``run_exported``: image -> flat tuple of tensors, rebuilt
    with the export's description, as a predictor does) on one image."""
    with torch.no_grad():
        eager = inference_func(model, [{"image": image}])[0]
        traced = instances_from_outputs(description, run_exported(image), image.shape[-2:])
    return compare(eager, traced)


def export_torchscript(traceable, image: torch.Tensor, output_dir: str, device: str):
    """Trace to ``model.ts``; returns its path and a runner of the reloaded module."""
    path = os.path.join(output_dir, "model.ts")
    with torch.no_grad():
        # check_trace=False: the checks compare against the eager model, on several images.
        traced = torch.jit.trace(traceable, (image,), check_trace=False)
    torch.jit.save(traced, path)
    scripted = torch.jit.load(path, map_location=device)
    return path, scripted


def export_onnx(traceable, image: torch.Tensor, output_dir: str, output_names: Sequence[str]):
    """Export to ``model.onnx`` (input "image", dynamic height and width, outputs named
    ``output_names``); returns its path and a runner of an ONNX Runtime session on it (CPU)."""
    try:
        import onnx  # noqa: F401  (the exporter needs it)
        import onnxruntime
    except ImportError as e:
        raise SystemExit("--format onnx needs onnx and onnxruntime: pip install 'iou_aware[onnx]'") from e
    path = os.path.join(output_dir, "model.onnx")
    with torch.no_grad():
        torch.onnx.export(
            traceable, (image,), path, dynamo=False, opset_version=ONNX_OPSET,
            input_names=["image"], output_names=list(output_names), dynamic_axes={"image": {1: "height", 2: "width"}},
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


def _size(image: torch.Tensor) -> str:
    return "x".join(str(s) for s in image.shape[-2:])


def report(name: str, image: torch.Tensor, result: Dict) -> str:
    if "error" in result:
        return f"{name} ({_size(image)}): the exported model failed: {result['error']}: MISMATCH"
    if result["num_detections"] != result["traced_num_detections"]:
        detail = f"{result['num_detections']} detections eager vs {result['traced_num_detections']} traced"
    else:
        fields = "".join(f", max |{k} diff| {v:.3g}" for k, v in sorted(result.get("max_field_diff", {}).items()))
        ties = result.get("tie_substitutions", 0)
        detail = (
            f"{result['num_detections']} detections, max |box diff| {result['max_box_diff']:.3g} px, "
            f"max |score diff| {result['max_score_diff']:.3g}{fields}, "
            f"classes {'equal' if result['classes_equal'] else 'DIFFER'}"
            + (f", {ties} other detection(s) of tied scores" if ties else "")
        )
    status = "ok" if result["ok"] else "MISMATCH"
    return f"{name} ({_size(image)}): {detail}: {status}"


def failed_check(error: Exception) -> Dict:
    return {
        "num_detections": None,
        "traced_num_detections": None,
        "max_box_diff": float("inf"),
        "max_score_diff": float("inf"),
        "classes_equal": False,
        "max_field_diff": {},
        "tie_substitutions": 0,
        "ok": False,
        "error": f"{type(error).__name__}: {error}",
    }


def check_images(cfg, args, image: torch.Tensor, sample: str) -> List:
    """(name, image) of every check but the tracing image's: another size, the blank image and
    the ``--check-image`` files."""
    images = []
    size = min(image.shape[-2:])
    short_edge = args.image_size if args.image_size != size else max(32, (3 * size) // 4)
    other_image = load_image(cfg, sample, short_edge).to(image.device)
    if tuple(other_image.shape[-2:]) != tuple(image.shape[-2:]):
        images.append(("another image size", other_image))
    images.append(("blank image", torch.full_like(image, BLANK_VALUE)))
    for path in args.check_image:
        images.append((f"check image {path}", load_image(cfg, path).to(image.device)))
    return images


def main(argv=None):
    args = get_parser().parse_args(argv)
    register_user_datasets(args)
    cfg = setup_cfg(args)
    meta_arch = cfg.MODEL.META_ARCHITECTURE
    missing = [p for p in args.check_image if not os.path.isfile(p)]
    if missing:
        raise SystemExit(f"--check-image not found: {', '.join(missing)}")

    sample = args.sample_image
    if not sample:
        if not cfg.DATASETS.TEST:
            raise SystemExit("No --sample-image and no DATASETS.TEST to take an image from")
        sample = DatasetCatalog.get(cfg.DATASETS.TEST[0])[0]["file_name"]
    elif not os.path.isfile(sample):
        raise SystemExit(f"--sample-image not found: {sample}")

    metadata = MetadataCatalog.get(cfg.DATASETS.TEST[0]) if len(cfg.DATASETS.TEST) else None
    try:
        check_class_names(cfg, metadata)
    except ValueError as e:
        raise SystemExit(f"cannot describe the export: {e}")
    model = build_model(cfg)
    DetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    model.eval()

    image = load_image(cfg, sample).to(cfg.MODEL.DEVICE)
    try:
        inference_func = inference_func_for(model)
    except TypeError as e:
        raise SystemExit(f"cannot trace {meta_arch}: {e}")
    os.makedirs(args.output, exist_ok=True)
    with torch.no_grad():
        detections = inference_func(model, [{"image": image}])[0]
    model_file = "model.onnx" if args.format == "onnx" else "model.ts"
    description = describe_export(cfg, model, detections, model_file, args.format, metadata)
    # eval(): the adapter is a new module in training mode, and the ONNX exporter applies its mode.
    traceable = TracingAdapter(model, [{"image": image}], inference_func).eval()
    try:
        if args.format == "onnx":
            path, run_exported = export_onnx(traceable, image, args.output, [o["name"] for o in description["outputs"]])
        else:
            path, run_exported = export_torchscript(traceable, image, args.output, cfg.MODEL.DEVICE)
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001  (any failure of the tracer / exporter is reported the same way)
        raise SystemExit(f"cannot trace {meta_arch}: {type(e).__name__}: {e}".rstrip())
    description_path = write_description(description, args.output)
    print(f"Exported {meta_arch} ({args.format}) on {sample} ({_size(image)}); saved {path} and {description_path}")
    try:
        with open(os.path.join(args.output, "outputs_schema.pkl"), "wb") as f:
            pickle.dump(traceable.outputs_schema, f)
    except Exception as e:  # noqa: BLE001  (optional: export.json describes the outputs)
        print(f"outputs_schema not saved: {e}")

    checks = []
    for name, check_image in [("same image as the trace", image)] + check_images(cfg, args, image, sample):
        try:
            result = check(model, inference_func, run_exported, description, check_image)
        except Exception as e:  # noqa: BLE001  (an exported graph may fail outright on another image)
            result = failed_check(e)
        print(report(name, check_image, result))
        checks.append({"name": name, "image_size": tuple(check_image.shape[-2:]), **result})
    same = checks[0]
    other = next((c for c in checks if c["name"] == "another image size"), None)
    if other is None:
        print("No image of another size to check.")

    timing = time_models(model, inference_func, run_exported, image, args.time) if args.time > 0 else {}
    if timing:
        print(
            f"Latency on {_size(image)} ({cfg.MODEL.DEVICE}, median of {args.time}): eager "
            f"{timing['eager_ms']:.1f} ms, {args.format} {timing['exported_ms']:.1f} ms "
            f"({timing['exported_ms'] / timing['eager_ms']:.2f}x)"
        )
    result = {
        **timing,
        "path": path,
        "description_path": description_path,
        "format": args.format,
        "num_detections": same["num_detections"],
        "max_box_diff": same["max_box_diff"],
        "max_score_diff": same["max_score_diff"],
        "same_image_ok": same["ok"],
        "other_image_ok": None if other is None else other["ok"],
        "other_image": other,
        "other_image_size": None if other is None else other["image_size"],
        "checks": checks,
        "all_ok": all(c["ok"] for c in checks),
    }
    for c in checks[1:]:
        if not c["ok"]:
            print(
                f"MISMATCH: the exported model differs from the eager model on the {c['name']} "
                f"({'x'.join(map(str, c['image_size']))})"
            )
    if not same["ok"]:
        print("MISMATCH: the exported model differs from the eager model on the image it was traced with")
    return result


def exit_status(result: Dict) -> int:
    ok = result["same_image_ok"] and result["other_image_ok"] is not False
    return 0 if ok and result.get("all_ok", True) else 2


if __name__ == "__main__":
    sys.exit(exit_status(main()))
