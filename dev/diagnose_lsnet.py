#!/usr/bin/env python
"""What limits a trained LSNet: assignment, landmark errors, and the AP ceiling of its scores.

    python dev/diagnose_lsnet.py --config-file configs/Stickmen/lsnet_keypoint_slim_R_FPN.yaml \
        --output output/diagnosis MODEL.WEIGHTS output/stickmen/lsnet_keypoint_slim_R_FPN/model_final.pth

On the config's first test set (at test resolution, no flip), with the training targets of
``LandmarkDatasetMapper``, it reports:

* assignment: the share of GT instances with at least one positive point in each stage, and the
  positives per such instance;
* landmark errors: per landmark set, stage and landmark, the mean distance in pixels between the
  decoded landmarks at the positive points and the GT (labelled keypoints only), and the same
  divided by the instance's sqrt(box area); also the initial landmarks at the refinement
  positives ("init_at_refine_positives"), the points the refinement starts from, so that what the
  refinement adds is measured on the same points;
* the validation losses (the training losses on the test set);
* AP of the model, and the ceiling of its scores: AP when the refined landmarks at every
  refinement-positive point are replaced by the GT ones (what perfect regression would give with
  these classification scores and this assignment);
* with ``--metrics`` (a training run's metrics.json): learning_curves.png, every loss against the
  iteration.

Writes results.json (and the PNG) to --output and prints a summary.
"""

import argparse
import json
import os
from collections import OrderedDict, defaultdict

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import build_detection_test_loader
from detectron2.data import detection_utils as utils
from detectron2.utils.events import EventStorage
from detectron2.utils.logger import setup_logger

from iou_aware.data import LandmarkDatasetMapper
from iou_aware.engine import Trainer
from iou_aware.evaluation import build_coco_evaluator
from iou_aware.layers import offsets_to_crosses
from iou_aware.model_zoo import load_config


def _setup(args):
    cfg = load_config(args.config_file, args.opts)
    if cfg.MODEL.META_ARCHITECTURE != "LSNet":
        raise SystemExit(
            f"diagnose_lsnet.py needs an LSNet config, got MODEL.META_ARCHITECTURE {cfg.MODEL.META_ARCHITECTURE}"
        )
    return cfg


def _annotated_loader(cfg, dataset):
    """The test images with LSNet's training targets, at test resolution and without flips."""
    kwargs = LandmarkDatasetMapper.from_config(cfg, is_train=True)
    kwargs["augmentations"] = utils.build_augmentation(cfg, is_train=False)
    return build_detection_test_loader(cfg, dataset, mapper=LandmarkDatasetMapper(**kwargs))


def _with_ground_truth_landmarks(model, predictions, points, strides, matched, gt_instances):
    """A copy of the head outputs whose refined crosses at each positive point (``matched``: per
    image (R,) GT index, -1 for none) are the target crosses of its GT: (N, 4 L, H, W) per level,
    landmark-major channels as LSNet._transpose reads them."""
    sets = list(model.head.landmark_sets.items())
    level_sizes = [p.shape[-2] * p.shape[-1] for p in predictions[0]]
    level_starts = torch.tensor([0] + level_sizes).cumsum(0)
    widths = [p.shape[-1] for p in predictions[0]]
    out = [list(level) for level in predictions]
    for i, (name, _) in enumerate(sets):
        refined = [level.clone() for level in out[2 + 2 * i]]
        for image, (matched_i, instances) in enumerate(zip(matched, gt_instances)):
            positive = torch.nonzero(matched_i >= 0).flatten()
            gt = instances.get(f"gt_{name}_landmarks")[matched_i[positive]]
            offsets = (gt - points[positive][:, None, :]) / strides[positive][:, None, None]
            crosses = offsets_to_crosses(offsets, model.cross_iou_alpha).flatten(1)  # (P, 4 L)
            level = torch.bucketize(positive, level_starts[1:], right=True)
            index = positive - level_starts[level]
            for lvl, width in enumerate(widths):
                here = level == lvl
                ys, xs = index[here] // width, index[here] % width
                refined[lvl][image, :, ys, xs] = crosses[here].t()
        out[2 + 2 * i] = refined
    return out


def _landmark_errors(model, crosses, matched, points, strides, gt_instances, name, sums):
    """Accumulate per-landmark pixel errors (absolute and / sqrt(box area)) of one stage at its positives."""
    crosses = torch.cat(crosses, dim=1)  # (N, R, L, 4)
    for crosses_i, matched_i, instances in zip(crosses, matched, gt_instances):
        positive = matched_i >= 0
        if not positive.any():
            continue
        gt_index = matched_i[positive]
        landmarks = model.decode_landmarks(crosses_i[positive], points[positive], strides[positive])
        gt = instances.get(f"gt_{name}_landmarks")[gt_index]
        error = (landmarks - gt).norm(dim=-1)  # (P, L) px
        size = instances.gt_boxes.area()[gt_index].clamp(min=1).sqrt()[:, None]
        labelled = (
            instances.gt_keypoint_visible[gt_index] if name == "keypoint" else torch.ones_like(error, dtype=torch.bool)
        )
        sums["px"] += torch.where(labelled, error, 0).sum(0)
        sums["rel"] += torch.where(labelled, error / size, 0).sum(0)
        sums["count"] += labelled.sum(0)


def diagnose(cfg, model, dataset, output_dir):
    model.eval()
    tasks_evaluator = {
        "model": build_coco_evaluator(cfg, dataset, None),
        "ceiling": build_coco_evaluator(cfg, dataset, None),
    }
    for evaluator in tasks_evaluator.values():
        evaluator.reset()
    sets = model.head.landmark_sets
    stats = {"init": [0, 0, 0], "refine": [0, 0, 0]}  # GTs, GTs with a positive, positives
    errors = {
        (name, stage): defaultdict(lambda n=s.num_landmarks: torch.zeros(n))
        for name, s in sets.items()
        for stage in ("init", "refine", "init_at_refine_positives")
    }
    losses = defaultdict(float)
    head_forward = model.head.forward
    num_batches = 0
    with torch.no_grad(), EventStorage():
        for batch in _annotated_loader(cfg, dataset):
            gt_instances = [x["instances"].to(model.device) for x in batch]
            images = model.preprocess_image(batch)
            features = model.backbone(images.tensor)
            features = [features[f] for f in model.head_in_features]
            predictions = model.head(features)
            assigned = model.assign(images, features, predictions, gt_instances)
            points, strides, crosses = assigned.points, assigned.strides, assigned.crosses
            init_matched, refine_matched = assigned.init_matched, assigned.refine_matched
            for key, value in model.losses(assigned, gt_instances).items():
                losses[key] += value.item()
            num_batches += 1
            for stage, matched in (("init", init_matched), ("refine", refine_matched)):
                for m, instances in zip(matched, gt_instances):
                    hits = torch.bincount(m[m >= 0], minlength=len(instances))
                    stats[stage][0] += len(instances)
                    stats[stage][1] += int((hits > 0).sum())
                    stats[stage][2] += int(hits.sum())
                for name, (init, refined) in crosses.items():
                    stage_crosses = init if stage == "init" else refined
                    _landmark_errors(
                        model, stage_crosses, matched, points, strides, gt_instances, name, errors[(name, stage)]
                    )
            for name, (init, _) in crosses.items():
                key = (name, "init_at_refine_positives")
                _landmark_errors(model, init, refine_matched, points, strides, gt_instances, name, errors[key])
            outputs = model(batch)
            tasks_evaluator["model"].process(batch, outputs)
            ceiling = _with_ground_truth_landmarks(model, predictions, points, strides, refine_matched, gt_instances)
            model.head.forward = lambda _features: ceiling
            try:
                tasks_evaluator["ceiling"].process(batch, model(batch))
            finally:
                model.head.forward = head_forward
    report = OrderedDict(dataset=dataset, weights=cfg.MODEL.WEIGHTS)
    report["assignment"] = {
        stage: {
            "instances": n,
            "share_with_a_positive": hit / max(n, 1),
            "positives_per_assigned_instance": pos / max(hit, 1),
        }
        for stage, (n, hit, pos) in stats.items()
    }
    report["validation_losses"] = {k: v / max(num_batches, 1) for k, v in losses.items()}
    report["landmark_error"] = {
        f"{name}/{stage}": {
            "mean_px": (e["px"].sum() / e["count"].sum().clamp(min=1)).item(),
            "mean_relative": (e["rel"].sum() / e["count"].sum().clamp(min=1)).item(),
            "per_landmark_px": (e["px"] / e["count"].clamp(min=1)).tolist(),
        }
        for (name, stage), e in errors.items()
    }
    report["ap"] = {key: evaluator.evaluate() for key, evaluator in tasks_evaluator.items()}
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "results.json"), "w") as f:
        json.dump(report, f, indent=2)
    return report


def plot_learning_curves(metrics_file: str, output_png: str) -> None:
    """Every ``loss_*`` of a Detectron2 metrics.json (one JSON object per line) against the iteration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = defaultdict(list)
    with open(metrics_file) as f:
        for line in f:
            record = json.loads(line)
            for key, value in record.items():
                if key.startswith("loss_") and "iteration" in record:
                    curves[key].append((record["iteration"], value))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for key, values in sorted(curves.items()):
        ax.plot(*zip(*values), label=key)
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss (median of 20 iterations)")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(output_png, dpi=100)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--dataset", help="registered dataset (default: the config's first TEST set)")
    parser.add_argument("--output", required=True, help="folder for results.json and learning_curves.png")
    parser.add_argument("--metrics", help="a training run's metrics.json, for learning_curves.png")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args(argv)
    setup_logger(name="iou_aware")
    cfg = _setup(args)
    if cfg.MODEL.WEIGHTS and not os.path.isfile(cfg.MODEL.WEIGHTS) and "://" not in cfg.MODEL.WEIGHTS:
        raise SystemExit(f"MODEL.WEIGHTS file not found: {cfg.MODEL.WEIGHTS}")
    model = Trainer.build_model(cfg)
    DetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    report = diagnose(cfg, model, args.dataset or cfg.DATASETS.TEST[0], args.output)
    if args.metrics:
        plot_learning_curves(args.metrics, os.path.join(args.output, "learning_curves.png"))
    print(json.dumps({k: report[k] for k in ("assignment", "validation_losses")}, indent=2))
    for key, value in report["landmark_error"].items():
        per = " ".join(f"{v:.1f}" for v in value["per_landmark_px"])
        print(
            f"{key}: mean {value['mean_px']:.2f} px ({value['mean_relative']:.3f} of sqrt(area)); per landmark: {per}"
        )
    for key, results in report["ap"].items():
        print(key, {task: round(r.get("AP", float("nan")), 2) for task, r in results.items()})
    return report


if __name__ == "__main__":
    main()
