#!/usr/bin/env python
"""Speed of one deformable 3x3 conv per implementation (MODEL.LSNET.DEFORM_CONV_IMPL), against a
plain 3x3 conv of the same size, side by side in one process.

    mkdir -p output/benchmarks
    python tools/benchmark_deform_conv.py --channels 256 --size 64 --batch-size 2 \
        --output output/benchmarks/deform_conv.md
    python tools/benchmark_deform_conv.py --device cuda --impls grid_sample torchvision

Every implementation gets the same input, weight, modulation and positions (the location grid
plus offsets of a few pixels, as a trained DCNv2 predicts); each repetition times the forward,
then the backward (gradients of the input, weight, positions and modulation), implementations
interleaved so that machine noise hits all of them. Reports medians and the ratios to the plain
conv (``F.conv2d``, the same FLOPs without the gather).
"""

import argparse
import shlex
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from iou_aware.layers.deformable import (
    DEFORM_CONV_IMPLS,
    deform_conv3x3,
    fused_kernel_available,
    kernel_grid,
    location_grid,
)


def make_inputs(args, device):
    g = torch.Generator().manual_seed(0)
    c, s, n = args.channels, args.size, args.batch_size
    x = torch.randn(n, c, s, s, generator=g)
    weight = torch.randn(c, c, 3, 3, generator=g) * (2 / (9 * c)) ** 0.5
    taps = location_grid(s, s)[None] + kernel_grid()[:, :, None, None]  # (9, 2, S, S)
    positions = taps[None] + 2 * torch.randn(n, 9, 2, s, s, generator=g)
    mask = torch.rand(n, 9, s, s, generator=g)
    return [t.to(device).requires_grad_() for t in (x, weight, positions, mask)]


def time_call(fn, device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return result, time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--size", type=int, default=64, help="height = width of the map and of the output")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    default_impls = (["fused"] if fused_kernel_available() else []) + ["grid_sample", "torchvision"]
    parser.add_argument("--impls", nargs="*", default=default_impls, help=f"any of {DEFORM_CONV_IMPLS}")
    parser.add_argument("--output", default="", help="write the markdown table here too")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    x, weight, positions, mask = make_inputs(args, args.device)

    def plain():
        return F.conv2d(x, weight, padding=1), (x, weight)

    def deformable(impl):
        return lambda: (deform_conv3x3(x, positions, weight, None, mask, impl=impl), (x, weight, positions, mask))

    runs = {"plain conv (F.conv2d)": plain}
    runs.update({impl: deformable(impl) for impl in args.impls})
    times = {name: {"forward": [], "backward": []} for name in runs}
    for repeat in range(args.warmup + args.repeats):
        for name, run in runs.items():
            (out, inputs), forward = time_call(run, args.device)
            grad = torch.ones_like(out)
            _, backward = time_call(lambda: torch.autograd.grad(out, inputs, grad), args.device)
            if repeat >= args.warmup:
                times[name]["forward"].append(forward)
                times[name]["backward"].append(backward)

    device = args.device if args.device != "cpu" else f"CPU, {args.threads} threads"
    lines = [
        f"Device: {device}; one 3x3 conv {args.channels} -> {args.channels} channels, {args.size} x {args.size}, "
        f"batch {args.batch_size}, modulated; {args.warmup} warm-up + {args.repeats} timed runs, interleaved.",
        "",
        "| implementation | forward ms (median) | backward ms (median) | forward + backward / plain conv |",
        "|---|---|---|---|",
    ]
    plain_total = None
    for name, t in times.items():
        forward, backward = statistics.median(t["forward"]), statistics.median(t["backward"])
        plain_total = plain_total or forward + backward
        lines.append(
            f"| {name} | {1000 * forward:.1f} | {1000 * backward:.1f} | {(forward + backward) / plain_total:.2f}x |"
        )
    lines += [
        "",
        "Command: `python tools/benchmark_deform_conv.py " + shlex.join(sys.argv[1:] if argv is None else argv) + "`",
    ]
    text = "\n".join(lines)
    print(text)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
