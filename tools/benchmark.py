#!/usr/bin/env python
"""Speed, parameters and FLOPs of detection models, side by side in one process.

    python tools/benchmark.py --config-file configs/Shapes/retinanet_slim_R_FPN.yaml \
        --compare configs/Shapes/iou_aware_retinanet_slim_R_FPN.yaml \
        --output output/benchmarks/iou_aware_retinanet.md --record output/benchmarks/iou_aware_retinanet.json
    python tools/benchmark.py --config-file detectron2://COCO-Detection/retinanet_R_50_FPN_1x.yaml \
        --compare configs/COCO-Detection/iou_aware_retinanet_R_50_FPN_1x.yaml --image-size 800 --device cuda
    python tools/benchmark.py --config-file configs/Shapes/lsnet_slim_R_FPN.yaml \
        --compare-opts "MODEL.LSNET.DEFORM_CONV_IMPL grid_sample"      # one model, two settings

Any config works: ours, or Detectron2's model zoo (``detectron2://<path in the model zoo>``).
Each model gets the same random images (and random GT boxes for training), warm-up runs, then
N timed repetitions; the two models are timed alternately so that machine noise hits both. On
CUDA the clock is read after ``torch.cuda.synchronize()``. Reports median and interquartile range,
the ratios compare / baseline, parameters and FLOPs (fvcore via
Detectron2's FlopCountAnalysis, one image, inference). Trailing
``KEY VALUE`` overrides apply to every model; ``--weights`` loads checkpoints (one per model).
"""

import argparse
import datetime
import json
import os
import shlex
import statistics
import sys
import time
from typing import Dict, List

import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances, Keypoints, PolygonMasks
from detectron2.utils.analysis import FlopCountAnalysis
from detectron2.utils.events import EventStorage
from fvcore.nn import parameter_count

import iou_aware  # noqa: F401  (registers the package's models)
from iou_aware.config import add_iou_aware_config
from iou_aware.data import contour_landmarks, extreme_points
from iou_aware.engine.run_record import git_commit, machine_description, nan_to_none
from iou_aware.model_zoo import resolve_config_file


def load_config(path: str, opts: List[str], device: str):
    cfg = get_cfg()
    add_iou_aware_config(cfg)
    cfg.merge_from_file(resolve_config_file(path))
    cfg.merge_from_list(opts)
    cfg.MODEL.DEVICE = device
    cfg.MODEL.WEIGHTS = ""
    return cfg


def make_inputs(batch_size: int, size: int, num_boxes: int, seed: int = 0) -> List[Dict]:
    """Random images with random GT boxes (for training), the same for every model."""
    generator = torch.Generator().manual_seed(seed)
    inputs = []
    for _ in range(batch_size):
        xy = torch.rand(num_boxes, 2, generator=generator) * size * 0.7
        wh = 8 + torch.rand(num_boxes, 2, generator=generator) * size * 0.3
        instances = Instances((size, size))
        instances.gt_boxes = Boxes(torch.cat([xy, (xy + wh).clamp(max=size)], dim=1))
        instances.gt_classes = torch.randint(0, 1, (num_boxes,))
        add_box_shaped_targets(instances, generator)
        image = torch.randint(0, 256, (3, size, size), generator=generator, dtype=torch.uint8)
        inputs.append({"image": image, "instances": instances, "height": size, "width": size})
    return inputs


def add_box_shaped_targets(instances: Instances, generator: torch.Generator) -> None:
    """Mask, keypoint and LSNet landmark targets derived from each GT box, so that every model
    (Mask R-CNN, Keypoint R-CNN, LSNet for any task) can take a training step: the box as polygon
    mask, 17 visible keypoints at random inside it, and the landmarks of those."""
    boxes = instances.gt_boxes.tensor
    polygons = [[np.array([x0, y0, x1, y0, x1, y1, x0, y1], dtype=np.float64)] for x0, y0, x1, y1 in boxes.tolist()]
    instances.gt_masks = PolygonMasks(polygons)
    xy = boxes[:, None, :2] + torch.rand(len(boxes), 17, 2, generator=generator) * (
        boxes[:, None, 2:] - boxes[:, None, :2]
    )
    instances.gt_keypoints = Keypoints(torch.cat([xy, torch.full((len(boxes), 17, 1), 2.0)], dim=2))
    box_landmarks = [extreme_points(box=b) for b in boxes.numpy()]
    instances.gt_box_landmarks = torch.as_tensor(np.asarray(box_landmarks, dtype=np.float32).reshape(-1, 5, 2))
    contours = [contour_landmarks(p) for p in polygons]
    num_landmarks = len(contours[0]) if contours else 37  # 36 contour points + centre, the default schema
    instances.gt_contour_landmarks = torch.as_tensor(
        np.asarray(contours, dtype=np.float32).reshape(len(boxes), num_landmarks, 2)
    )
    instances.gt_keypoint_landmarks = torch.cat([xy, instances.gt_boxes.get_centers()[:, None]], dim=1)
    instances.gt_keypoint_visible = torch.ones(len(boxes), 18, dtype=torch.bool)


class Runner:
    """One model with its timed operations."""

    def __init__(self, name, cfg, weights, inputs, device, amp: bool = False):
        self.name = name
        # Mixed precision as Detectron2's AMPTrainer: autocast around the forward (float16 on CUDA,
        # bfloat16 on CPU); the backward and the optimizer step run outside it.
        self.amp = amp
        self.model = build_model(cfg)
        if weights:
            DetectionCheckpointer(self.model).load(weights)
        self.inputs = inputs
        self.device = device
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=1e-4, momentum=0.9)
        self.times = {"inference": [], "train": []}
        self.module_time = {}  # class name -> seconds spent inside such modules in timed inference
        self._recording = False

    def time_modules(self, class_names: List[str]):
        """Accumulate the time spent inside modules of these classes during timed inference
        (outermost calls only, so nested matches are not counted twice)."""
        depth = {"n": 0}

        def pre_hook(module, inputs):
            if depth["n"] == 0:
                self._sync()
                module._benchmark_start = time.perf_counter()
            depth["n"] += 1

        def post_hook(module, inputs, outputs):
            depth["n"] -= 1
            if depth["n"] == 0 and self._recording:
                self._sync()
                name = type(module).__name__
                self.module_time[name] = self.module_time.get(name, 0.0) + time.perf_counter() - module._benchmark_start

        for module in self.model.modules():
            if type(module).__name__ in class_names:
                self.module_time.setdefault(type(module).__name__, 0.0)
                module.register_forward_pre_hook(pre_hook)
                module.register_forward_hook(post_hook)

    def _autocast(self):
        device_type = "cuda" if self.device.startswith("cuda") else "cpu"
        dtype = torch.float16 if device_type == "cuda" else torch.bfloat16
        return torch.autocast(device_type, dtype=dtype, enabled=self.amp)

    def _sync(self):
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()

    def inference(self, record: bool):
        self.model.eval()
        self._recording = record
        with torch.no_grad():
            self._sync()
            start = time.perf_counter()
            with self._autocast():
                self.model(self.inputs[:1])
            self._sync()
        self._recording = False
        if record:
            self.times["inference"].append(time.perf_counter() - start)

    def train_step(self, record: bool):
        self.model.train()
        self._sync()
        start = time.perf_counter()
        with EventStorage(), self._autocast():
            losses = self.model(self.inputs)
        self.optimizer.zero_grad()
        sum(losses.values()).backward()
        self.optimizer.step()
        self._sync()
        if record:
            self.times["train"].append(time.perf_counter() - start)

    def flops_and_params(self):
        self.model.eval()
        with torch.no_grad():
            # Detectron2's FlopCountAnalysis traces through TracingAdapter (Instances outputs).
            image_only = [{"image": self.inputs[0]["image"]}]
            flops = FlopCountAnalysis(self.model, image_only)
            flops.unsupported_ops_warnings(False)
            flops.uncalled_modules_warnings(False)
            total = flops.total()
        return total, parameter_count(self.model)[""]


def profile_train_step(runner: "Runner", num_ops: int) -> List[str]:
    """Markdown rows: the ``num_ops`` ops with the largest self time in one training step (forward,
    backward and optimizer step), with their share of the step's total self time and call count."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if runner.device.startswith("cuda") else [])
    with profile(activities=activities) as prof:
        runner.train_step(record=False)
    events = [
        e for e in prof.key_averages() if e.self_cpu_time_total > 0 or getattr(e, "self_device_time_total", 0) > 0
    ]
    on_device = runner.device.startswith("cuda")

    def self_time(e):
        return getattr(e, "self_device_time_total", 0) if on_device else e.self_cpu_time_total

    total = sum(self_time(e) for e in events) or 1
    rows = ["| op | self time ms | share | calls |", "|---|---|---|---|"]
    for e in sorted(events, key=self_time, reverse=True)[:num_ops]:
        rows.append(f"| {e.key} | {self_time(e) / 1000:.1f} | {100 * self_time(e) / total:.1f}% | {e.count} |")
    return rows


def summarize(values):
    ordered = sorted(values)
    q1, _, q3 = statistics.quantiles(ordered, n=4) if len(ordered) >= 2 else (ordered[0],) * 3
    return statistics.median(ordered), q3 - q1


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, help="baseline config")
    parser.add_argument("--compare", default="", help="second config, timed side by side")
    parser.add_argument("--weights", nargs="*", default=[], help="checkpoint per config (optional)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for every model")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=4, help="images per training step")
    parser.add_argument("--num-boxes", type=int, default=6, help="GT boxes per training image")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--tasks", default="inference,train,flops")
    parser.add_argument("--output", default="", help="write the markdown table here too")
    parser.add_argument(
        "--record",
        default="",
        metavar="JSON",
        help="write a benchmark record here (settings, per-model times, ratios, commit, machine), "
        "from which tools/results_tables.py builds the cost columns and docs/benchmarks.md",
    )
    parser.add_argument(
        "--module-share",
        default="",
        help="comma-separated module class names (e.g. PyramidDeformConv): report the share of inference time spent in them",
    )
    parser.add_argument(
        "--profile-ops",
        type=int,
        default=0,
        metavar="N",
        help="also profile one training step per model with torch.profiler and list its N most expensive ops (self time)",
    )
    parser.add_argument(
        "--compare-opts",
        default="",
        metavar='"KEY VALUE ..."',
        help="overrides for the second model only, one quoted string; --compare defaults to --config-file then "
        '(e.g. --compare-opts "MODEL.LSNET.DEFORM_CONV_IMPL grid_sample": one model, two settings)',
    )
    parser.add_argument(
        "--amp",
        action="store_true",
        help="mixed precision for every model (autocast: float16 on CUDA, bfloat16 on CPU)",
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides for every config")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    tasks = set(args.tasks.split(","))

    compare = args.compare or (args.config_file if args.compare_opts else "")
    paths = [args.config_file] + ([compare] if compare else [])
    opts = [args.opts, args.opts + args.compare_opts.split()]
    names = [os.path.basename(path) for path in paths]
    if args.compare_opts:
        names[-1] += f" ({args.compare_opts})"
    weights = args.weights + [""] * (len(paths) - len(args.weights))
    inputs = make_inputs(args.batch_size, args.image_size, args.num_boxes)
    runners = []
    for name, path, model_opts, w in zip(names, paths, opts, weights):
        torch.manual_seed(0)
        runners.append(Runner(name, load_config(path, model_opts, args.device), w, inputs, args.device, args.amp))
        if args.module_share:
            runners[-1].time_modules(args.module_share.split(","))

    for task, method in (("inference", "inference"), ("train", "train_step")):
        if task not in tasks:
            continue
        for runner in runners:
            for _ in range(args.warmup):
                getattr(runner, method)(record=False)
        for _ in range(args.repeats):
            for runner in runners:
                getattr(runner, method)(record=True)

    rows = []
    header = ["model"]
    if "inference" in tasks:
        header += ["inference ms/img (median)", "IQR ms"]
    if "train" in tasks:
        header += [f"train ms/iter (batch {args.batch_size})", "IQR ms"]
    if "flops" in tasks:
        header += ["GFLOPs (1 img)", "params (M)"]
    stats = []
    for runner in runners:
        row, s = [runner.name], {}
        if "inference" in tasks:
            s["inference"], iqr = summarize(runner.times["inference"])
            row += [f"{1000 * s['inference']:.1f}", f"{1000 * iqr:.1f}"]
        if "train" in tasks:
            s["train"], iqr = summarize(runner.times["train"])
            row += [f"{1000 * s['train']:.1f}", f"{1000 * iqr:.1f}"]
        if runner.module_time and runner.times["inference"]:
            total = sum(runner.times["inference"])
            s["module_share"] = {name: seconds / total for name, seconds in runner.module_time.items()}
        if "flops" in tasks:
            s["flops"], s["params"] = runner.flops_and_params()
            row += [f"{s['flops'] / 1e9:.3f}", f"{s['params'] / 1e6:.3f}"]
        rows.append(row)
        stats.append(s)
    if len(runners) == 2:
        ratio = ["ratio (compare / baseline)"]
        for key in ("inference", "train"):
            if key in tasks:
                ratio += [f"{stats[1][key] / stats[0][key]:.3f}x", ""]
        if "flops" in tasks:
            ratio += [
                f"{stats[1]['flops'] / stats[0]['flops']:.3f}x",
                f"{stats[1]['params'] / stats[0]['params']:.3f}x",
            ]
        rows.append(ratio)

    table = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    table += ["| " + " | ".join(row) + " |" for row in rows]
    if args.module_share and "inference" in tasks:
        table.append("")
        for runner, s in zip(runners, stats):
            for name, share in s.get("module_share", {}).items():
                table.append(f"Share of {runner.name}'s inference time in {name}: {100 * share:.1f}%")
    for runner in runners if args.profile_ops else []:
        table += ["", f"Most expensive ops of one {runner.name} training step (torch.profiler, self time):", ""]
        table += profile_train_step(runner, args.profile_ops)
    command = "python tools/benchmark.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    device = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else f"CPU, {args.threads} threads"
    text = (
        f"Device: {device}{', AMP' if args.amp else ''}; image {args.image_size}x{args.image_size}; {args.warmup} warm-up + "
        f"{args.repeats} timed runs per model, interleaved.\n\n" + "\n".join(table) + f"\n\nCommand: `{command}`\n"
    )
    print(text)
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w") as f:
            f.write(text)
    if args.record:
        models = [
            {"name": name, "config": path, "opts": list(model_opts), "weights": w or None}
            for name, path, model_opts, w in zip(names, paths, opts, weights)
        ]
        write_benchmark_record(args.record, build_benchmark_record(args, command, models, stats, runners))
    return stats


def build_benchmark_record(args, command: str, models: List[Dict], stats: List[Dict], runners) -> Dict:
    """The JSON record of one benchmark: settings, per model the median / IQR times in seconds
    (``inference``: one image; ``train``: one step of ``batch_size`` images), FLOPs and parameters,
    and the ratios compare / baseline when two models ran."""
    commit, dirty = git_commit()
    for model, s, runner in zip(models, stats, runners):
        for key in ("inference", "train"):
            if runner.times[key]:
                model[f"{key}_s"], model[f"{key}_iqr_s"] = summarize(runner.times[key])
        if "flops" in s:
            model["flops"], model["params"] = s["flops"], s["params"]
    ratios = {}
    if len(models) == 2:
        for key in ("inference_s", "train_s", "flops", "params"):
            if key in models[0] and key in models[1]:
                ratios[key.replace("_s", "")] = models[1][key] / models[0][key]
    return {
        "kind": "benchmark",
        "command": command,
        "commit": commit,
        "dirty": dirty,
        "settings": {
            "device": args.device,
            "threads": args.threads,
            "image_size": args.image_size,
            "batch_size": args.batch_size,
            "num_boxes": args.num_boxes,
            "warmup": args.warmup,
            "repeats": args.repeats,
            "amp": args.amp,
        },
        "models": models,
        "ratios": ratios,
        "machine": machine_description(args.device),
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def write_benchmark_record(path: str, record: Dict) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(nan_to_none(record), f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
