#!/usr/bin/env python
"""Localization-quality analysis of a trained model (the IoU-aware paper's Fig. 4 and Table 4).

    python tools/analyze.py --config-file configs/Shapes/iou_aware_retinanet_slim_R_FPN.yaml \
        --output output/analysis MODEL.WEIGHTS output/shapes/iou_aware_retinanet_slim_R_FPN/model_final.pth
    python tools/analyze.py ... --alpha-sweep 0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0 --upper-bound

Writes to --output: confidence_vs_iou.png (scatter of each confidence field vs IoU with the best
same-class GT, Pearson r in the titles), ap_vs_iou_threshold.png and results.json; prints the
correlations and, with --alpha-sweep / --upper-bound (IoU-aware models), the COCO AP of each
setting on the same weights; with --score-thresholds, the detections per image, precision and
recall (IoU >= 0.5, one detection per object) that each score threshold keeps, to choose the
threshold of a demo or a deployment:

    python tools/analyze.py --config-file <config> --output output/analysis \
        --score-thresholds 0.3,0.4,0.5,0.6,0.7 MODEL.WEIGHTS <model_final.pth>
"""

import argparse
import json
import os
from collections import OrderedDict

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import build_detection_test_loader
from detectron2.evaluation import DatasetEvaluators, inference_on_dataset
from detectron2.utils.logger import setup_logger

from iou_aware.data import add_user_dataset_arguments, build_annotated_test_mapper, register_user_datasets
from iou_aware.engine import Trainer
from iou_aware.evaluation import (
    GroundTruthIoUModel,
    LocalizationQualityEvaluator,
    ScoreThresholdEvaluator,
    build_coco_evaluator,
    plot_ap_vs_iou_threshold,
    plot_confidence_vs_iou,
)
from iou_aware.model_zoo import load_config


def _setup(args):
    return load_config(args.config_file, args.opts)


def _evaluate(cfg, model, dataset, output_dir, with_localization, loader=None, extra_evaluators=()):
    """COCO AP (and the localization evaluator if asked, and ``extra_evaluators``) of ``model`` on ``dataset``."""
    coco = build_coco_evaluator(cfg, dataset, output_dir)
    evaluators = [coco, *extra_evaluators]
    localization = LocalizationQualityEvaluator(dataset) if with_localization else None
    if localization is not None:
        evaluators.append(localization)
    loader = loader if loader is not None else Trainer.build_test_loader(cfg, dataset)
    results = inference_on_dataset(model, loader, DatasetEvaluators(evaluators))
    return results, localization


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--dataset", help="registered dataset (default: the config's first TEST set)")
    parser.add_argument("--output", required=True, help="folder for the PNG and JSON files")
    parser.add_argument("--alpha-sweep", default="", help="comma-separated alphas of S to evaluate")
    parser.add_argument("--upper-bound", action="store_true", help="also evaluate with the true IoU")
    parser.add_argument(
        "--score-thresholds",
        default="",
        help="comma-separated score thresholds: detections per image, precision and recall at each",
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = add_user_dataset_arguments(parser).parse_args(argv)
    register_user_datasets(args)
    setup_logger(name="iou_aware")
    setup_logger(name="detectron2")
    cfg = _setup(args)
    dataset = args.dataset or cfg.DATASETS.TEST[0]
    if cfg.MODEL.WEIGHTS and not os.path.isfile(cfg.MODEL.WEIGHTS) and "://" not in cfg.MODEL.WEIGHTS:
        raise SystemExit(f"MODEL.WEIGHTS file not found: {cfg.MODEL.WEIGHTS}")
    os.makedirs(args.output, exist_ok=True)

    model = Trainer.build_model(cfg)
    DetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    model.eval()
    thresholds = [float(t) for t in args.score_thresholds.split(",") if t.strip()]
    extra = [ScoreThresholdEvaluator(dataset, thresholds)] if thresholds else []
    results, localization = _evaluate(cfg, model, dataset, os.path.join(args.output, "inference"), True, None, extra)
    report = OrderedDict(config=args.config_file, weights=cfg.MODEL.WEIGHTS, dataset=dataset)
    report["bbox"] = results["bbox"]
    report["localization"] = results["localization"]
    if thresholds:
        report["score_thresholds"] = results["score_thresholds"]
    plot_confidence_vs_iou(
        localization.records,
        os.path.join(args.output, "confidence_vs_iou.png"),
        title=os.path.basename(args.config_file),
    )
    curves = OrderedDict(model=results["bbox"])

    sweep = [float(a) for a in args.alpha_sweep.split(",") if a.strip()]
    if sweep and getattr(getattr(model, "head", None), "iou_pred", None) is None:
        raise SystemExit(
            "--alpha-sweep needs a model with the IoU branch (IoUAwareRetinaNet, or MODEL.IOU_AWARE.ENABLED)"
        )
    upper_bound_model = None
    if args.upper_bound:
        try:
            upper_bound_model = GroundTruthIoUModel(model)
        except TypeError as e:
            raise SystemExit(f"--upper-bound: {e}")
    if sweep:
        report["alpha_sweep"] = OrderedDict()
        for alpha in sweep:
            model.score_alpha = alpha
            sweep_results, _ = _evaluate(cfg, model, dataset, None, False)
            report["alpha_sweep"][str(alpha)] = sweep_results["bbox"]
        model.score_alpha = cfg.MODEL.IOU_AWARE.SCORE_ALPHA
    if args.upper_bound:
        annotated = build_detection_test_loader(cfg, dataset, mapper=build_annotated_test_mapper(cfg))
        upper_results, _ = _evaluate(cfg, upper_bound_model, dataset, None, False, loader=annotated)
        report["upper_bound"] = upper_results["bbox"]
        curves["upper bound (true IoU)"] = upper_results["bbox"]
    plot_ap_vs_iou_threshold(curves, os.path.join(args.output, "ap_vs_iou_threshold.png"))

    with open(os.path.join(args.output, "results.json"), "w") as f:
        json.dump(report, f, indent=2)
    print(json.dumps(report["localization"], indent=2))
    for name in ("alpha_sweep",):
        for alpha, r in report.get(name, {}).items():
            print(f"alpha {alpha}: AP {r['AP']:.2f} AP50 {r['AP50']:.2f} AP75 {r['AP75']:.2f} APs {r['APs']:.2f}")
    if "upper_bound" in report:
        print(f"upper bound: AP {report['upper_bound']['AP']:.2f}")
    for threshold, point in report.get("score_thresholds", {}).items():
        print(
            f"score >= {threshold}: {point['detections_per_image']:.1f} detections / image, "
            f"precision {point['precision']:.2f}, recall {point['recall']:.2f} (IoU >= 0.5)"
        )
    print(f"Wrote {args.output}/confidence_vs_iou.png, ap_vs_iou_threshold.png, results.json")
    return report


if __name__ == "__main__":
    main()
