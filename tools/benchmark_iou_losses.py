#!/usr/bin/env python
"""
Throughput of iou_aware's box_iou_loss against torchvision's IoU losses on CPU.

Each measurement is forward + backward of a mean-reduced loss over N random
(pred, gt) box pairs; the table reports the median over --runs timed runs.
Candidates are timed round-robin so that drifts in machine load hit all of them.

Example:
    mkdir -p output/benchmarks
    python tools/benchmark_iou_losses.py --output output/benchmarks/iou_losses.md
"""

import argparse
import os
import platform
import shlex
import statistics
import sys
import time

import torch
import torchvision
from torchvision import ops

from iou_aware.layers import BOX_IOU_LOSS_KINDS, box_iou_loss

TORCHVISION_LOSSES = {
    "giou": ops.generalized_box_iou_loss,
    "diou": ops.distance_box_iou_loss,
    "ciou": ops.complete_box_iou_loss,
}


def random_box_pairs(n, seed):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 1000
    gt = torch.cat([xy, xy + 1 + torch.rand(n, 2, generator=g) * 300], dim=1)
    pred = gt + 30 * torch.randn(n, 4, generator=g)
    pred = torch.cat([pred[:, :2], torch.max(pred[:, 2:], pred[:, :2] + 1)], dim=1)
    return pred, gt


def time_forward_backward(loss_fn, pred, gt):
    pred = pred.detach().requires_grad_()
    start = time.perf_counter()
    loss_fn(pred, gt).backward()
    return time.perf_counter() - start


def benchmark(num_boxes, runs, warmup, seed):
    """
    Returns:
        dict[str, float]: median boxes/s of each candidate, keyed "ours/<kind>" and
        "torchvision/<kind>".
    """
    pred, gt = random_box_pairs(num_boxes, seed)
    candidates = {f"ours/{kind}": (lambda p, t, k=kind: box_iou_loss(p, t, k)) for kind in BOX_IOU_LOSS_KINDS}
    for kind, loss_fn in TORCHVISION_LOSSES.items():
        candidates[f"torchvision/{kind}"] = lambda p, t, f=loss_fn: f(p, t, reduction="mean")

    times = {name: [] for name in candidates}
    for i in range(warmup + runs):
        for name, loss_fn in candidates.items():
            elapsed = time_forward_backward(loss_fn, pred, gt)
            if i >= warmup:
                times[name].append(elapsed)
    return {name: num_boxes / statistics.median(t) for name, t in times.items()}


def markdown_table(throughput):
    lines = [
        "| kind | ours (boxes/s) | torchvision (boxes/s) | ours / torchvision |",
        "|---|---:|---:|---:|",
    ]
    for kind in BOX_IOU_LOSS_KINDS:
        ours = throughput[f"ours/{kind}"]
        if kind in TORCHVISION_LOSSES:
            theirs = throughput[f"torchvision/{kind}"]
            lines.append(f"| {kind} | {ours:,.0f} | {theirs:,.0f} | {ours / theirs:.2f} |")
        else:
            # No torchvision counterpart: compared with torchvision's GIoU loss.
            theirs = throughput["torchvision/giou"]
            lines.append(f"| {kind} | {ours:,.0f} | — | {ours / theirs:.2f} (vs giou) |")
    return "\n".join(lines)


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-boxes", type=int, default=100_000, help="box pairs per call")
    parser.add_argument("--runs", type=int, default=30, help="timed runs per candidate")
    parser.add_argument("--warmup", type=int, default=5, help="untimed runs per candidate first")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads for all")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", help="also write the table and the command to this file")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    throughput = benchmark(args.num_boxes, args.runs, args.warmup, args.seed)
    table = markdown_table(throughput)
    print(table)

    if args.output:
        command = shlex.join([os.path.relpath(sys.executable), *sys.argv])
        setup = (
            f"{args.num_boxes:,} random box pairs, float32, CPU, forward + backward with "
            f'reduction "mean", median of {args.runs} runs after {args.warmup} warm-up runs, '
            f"torch.set_num_threads({args.threads}). torch {torch.__version__}, torchvision "
            f"{torchvision.__version__}, {_cpu_name()}."
        )
        with open(args.output, "w") as f:
            f.write(
                "# IoU loss throughput\n\n"
                f"Measured with (from the repository root):\n\n```\n{command}\n```\n\n"
                f"{setup}\n\n{table}\n\n"
                "Kinds without a torchvision counterpart are compared with its GIoU loss.\n"
            )


if __name__ == "__main__":
    main()
