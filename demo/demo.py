#!/usr/bin/env python
"""Run a trained model on images or a video and draw its predictions with Detectron2's Visualizer.

    python demo/demo.py --config-file configs/Shapes/iou_aware_retinanet_slim_R_FPN.yaml \
        --input 'images/*.png' --output vis/ --opts MODEL.WEIGHTS output/.../model_final.pth
    python demo/demo.py --config-file <cfg> --video-input in.mp4 --output out.mp4 --opts MODEL.WEIGHTS <pth>
    python demo/demo.py --onnx export/ --input 'images/*.png' --output vis/

As Detectron2's demo: boxes, masks and keypoints are drawn with the metadata of the config's first
test dataset. ``--onnx DIR`` runs a model exported by ``tools/export.py --format onnx`` (DIR holds
``model.onnx`` and ``export.json``) with ONNX Runtime through ``iou_aware.deployment.OnnxPredictor``
instead of the eager model: no config file or weights, the class names come from ``export.json``.
An unreadable image is reported by name and skipped; the exit status is 1 if any input failed.
"""

import argparse
import glob
import logging
import os
import sys
from typing import List

import cv2
import torch
import tqdm
from detectron2.config import get_cfg
from detectron2.data import MetadataCatalog
from detectron2.data.detection_utils import read_image
from detectron2.engine import DefaultPredictor
from detectron2.utils.logger import setup_logger
from detectron2.utils.video_visualizer import VideoVisualizer
from detectron2.utils.visualizer import ColorMode, Visualizer

import iou_aware  # noqa: F401  (registers the models and the synthetic datasets)
from iou_aware.config import add_iou_aware_config
from iou_aware.data import add_user_dataset_arguments, register_user_datasets
from iou_aware.deployment import check_class_names
from iou_aware.model_zoo import resolve_config_file

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
logger = logging.getLogger("iou_aware.demo")


def setup_cfg(args):
    cfg = get_cfg()
    add_iou_aware_config(cfg)
    cfg.merge_from_file(resolve_config_file(args.config_file))
    cfg.merge_from_list(args.opts)
    threshold = args.confidence_threshold
    cfg.MODEL.RETINANET.SCORE_THRESH_TEST = threshold
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = threshold
    cfg.MODEL.GFL.SCORE_THRESH_TEST = threshold
    cfg.MODEL.LSNET.SCORE_THRESH_TEST = threshold
    if not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"
    weights = cfg.MODEL.WEIGHTS
    if not weights:
        raise SystemExit("MODEL.WEIGHTS is empty: pass --opts MODEL.WEIGHTS <checkpoint.pth>")
    if "://" not in weights and not os.path.isfile(weights):
        raise SystemExit(f"MODEL.WEIGHTS file not found: {weights}")
    cfg.freeze()
    return cfg


def expand_inputs(patterns: List[str]) -> List[str]:
    """Files, globs and folders (their images, sorted) -> list of paths; names the empty ones."""
    paths = []
    for pattern in patterns:
        if os.path.isdir(pattern):
            found = sorted(p for p in glob.glob(os.path.join(pattern, "*")) if p.lower().endswith(IMAGE_EXTENSIONS))
        else:
            found = sorted(glob.glob(os.path.expanduser(pattern))) or [pattern]
        paths.extend(found)
    return paths


def output_path(output: str, input_path: str, multiple: bool) -> str:
    if multiple or os.path.isdir(output):
        os.makedirs(output, exist_ok=True)
        return os.path.join(output, os.path.splitext(os.path.basename(input_path))[0] + ".png")
    return output


def metadata_of(cfg):
    """The metadata the Visualizer draws with: the config's first test dataset's."""
    return MetadataCatalog.get(cfg.DATASETS.TEST[0] if cfg.DATASETS.TEST else "__unused")


def run_on_images(metadata, predictor, paths: List[str], output: str) -> List[str]:
    """Draw predictions for each image into ``output``; returns one error message per failed input."""
    failures = []
    for path in tqdm.tqdm(paths, desc="images", disable=len(paths) < 2):
        try:
            image = read_image(path, format="BGR")
        except Exception as error:  # PIL raises several types for missing / corrupt files
            failures.append(f"Cannot read image {path}: {error}")
            logger.error(failures[-1])
            continue
        predictions = predictor(image)
        visualizer = Visualizer(image[:, :, ::-1], metadata, instance_mode=ColorMode.IMAGE)
        drawn = visualizer.draw_instance_predictions(predictions["instances"].to("cpu")).get_image()
        logger.info(f"{path}: {len(predictions['instances'])} detections")
        if output:
            cv2.imwrite(output_path(output, path, len(paths) > 1), drawn[:, :, ::-1])
    return failures


def run_on_video(metadata, predictor, video_path: str, output: str) -> List[str]:
    """Draw predictions on every frame into ``output``; returns the error messages (0 or 1)."""
    video = cv2.VideoCapture(video_path)
    if not video.isOpened():
        logger.error(f"Cannot open video {video_path}")
        return [f"Cannot open video {video_path}"]
    width, height = int(video.get(cv2.CAP_PROP_FRAME_WIDTH)), int(video.get(cv2.CAP_PROP_FRAME_HEIGHT))
    fps = video.get(cv2.CAP_PROP_FPS) or 25.0
    frames = int(video.get(cv2.CAP_PROP_FRAME_COUNT))
    visualizer = VideoVisualizer(metadata, ColorMode.IMAGE)
    writer = None
    if output:
        path = output if not os.path.isdir(output) else os.path.join(output, os.path.basename(video_path))
        writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    with tqdm.tqdm(total=frames or None, desc="frames") as progress:
        while True:
            ok, frame = video.read()
            if not ok:
                break
            instances = predictor(frame)["instances"].to("cpu")
            drawn = visualizer.draw_instance_predictions(frame[:, :, ::-1], instances).get_image()
            if writer is not None:
                writer.write(drawn[:, :, ::-1])
            progress.update(1)
    video.release()
    if writer is not None:
        writer.release()
    return []


def onnx_predictor(export_dir: str, confidence_threshold: float):
    """OnnxPredictor of an export folder; its detections below ``confidence_threshold`` dropped
    (the model's own score threshold is part of the graph)."""
    from iou_aware.deployment import OnnxPredictor, import_onnxruntime

    try:
        import_onnxruntime()
    except ImportError as e:
        raise SystemExit(str(e))
    if not os.path.isdir(export_dir):
        raise SystemExit(f"--onnx: no folder {export_dir}")
    try:
        return OnnxPredictor(export_dir, score_threshold=confidence_threshold)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"--onnx {export_dir}: {e}")


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", metavar="FILE", help="the model's config (not with --onnx)")
    parser.add_argument(
        "--onnx", metavar="DIR",
        help="run the ONNX model exported into DIR by tools/export.py --format onnx instead of the eager model",
    )  # fmt: skip
    parser.add_argument("--input", nargs="+", help="image files, globs ('dir/*.png') or folders")
    parser.add_argument("--video-input", help="a video file")
    parser.add_argument("--output", help="output folder (several images) or file")
    parser.add_argument(
        "--confidence-threshold", type=float, default=0.5,
        help="draw detections whose score is at least this (default 0.5, as Detectron2's demo; the same for "
        "every model: each one's score is in [0, 1], a class probability or, for IoU-aware RetinaNet and GFL, "
        "one that includes the predicted IoU). The detections per image, precision and recall of any threshold "
        "on your validation set: tools/analyze.py --score-thresholds 0.3,0.4,0.5,0.6",
    )  # fmt: skip
    parser.add_argument("--opts", default=[], nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    add_user_dataset_arguments(parser)
    return parser


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    register_user_datasets(args)
    setup_logger(name="iou_aware")
    setup_logger(name="fvcore")
    if not args.input and not args.video_input:
        raise SystemExit("Give --input and/or --video-input")
    if bool(args.onnx) == bool(args.config_file):
        raise SystemExit("Give either --config-file (eager model) or --onnx DIR (exported model)")
    if args.onnx:
        if args.opts:
            raise SystemExit("--opts changes the config of an eager model; an ONNX export has its settings built in")
        predictor = onnx_predictor(args.onnx, args.confidence_threshold)
        metadata = predictor.metadata
    else:
        misplaced = [a for a in args.opts if a in ("--register-coco", "--register-voc", "--voc-classes")]
        if misplaced:
            raise SystemExit(f"{misplaced[0]} after --opts is read as a config key: put it before --opts")
        cfg = setup_cfg(args)
        metadata = metadata_of(cfg)
        try:
            check_class_names(cfg, metadata)
        except ValueError as e:
            raise SystemExit(f"cannot name the classes: {e}")
        predictor = DefaultPredictor(cfg)
    failures = []
    if args.input:
        failures += run_on_images(metadata, predictor, expand_inputs(args.input), args.output)
    if args.video_input:
        failures += run_on_video(metadata, predictor, args.video_input, args.output)
    if failures:
        logger.error(f"{len(failures)} input(s) failed:\n" + "\n".join(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
