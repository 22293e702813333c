"""
Deformable 3x3 convolutions whose taps sit at arbitrary positions: a modulated deformable conv
(DCNv2) for LSNet's towers, and LSNet's pyramid deformable conv, which samples the same points on a
feature level and on its two neighbours.

Positions are given in the index units of the level the output lives on: (y, x) = (i, j) is the
centre of output location (i, j), a level's index i being pixel ``i * stride``. Samples are bilinear
with zeros outside the feature map, as in every DCN.

Implementations of the same operation (``impl``, ``MODEL.LSNET.DEFORM_CONV_IMPL``), none needing
a compiled Detectron2:

* "fused": this package's C++ CPU kernel (``iou_aware._C``, built by ``setup.py``): the bilinear
  taps of a channels-last map gathered into one (N * H * W, 9 * Cin) matrix, the modulation folded
  into the bilinear weights, one GEMM with the weights; its backward scatters once into the
  features. CPU float32 / float64 only.
* "grid_sample": ``F.grid_sample`` gathers the taps, one batched matmul applies the weights. Any
  device and dtype.
* "torchvision": ``torchvision.ops.deform_conv2d``, the reference the tests compare against.
* "auto" (the default): "fused" where it applies (CPU, float32 / float64, the kernel built, no
  autocast, not tracing), else "grid_sample"; chosen per call. ``tools/benchmark_deform_conv.py``
  times the implementations (docs/models/lsnet.md, "Deformable convolutions").
"""

import os
import warnings
from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable
from torchvision.ops import deform_conv2d

from ..utils.choices import check_choice
from .scratch_pool import ScratchPool

# The interface of iou_aware._C this module calls (INTERFACE_VERSION in csrc/deform_gather.cpp).
KERNEL_INTERFACE_VERSION = 1


def _usable_kernels(module):
    """``module`` if it is a build of the current kernel source, else None with a warning (a build
    left from an older checkout, until `make install` rebuilds it)."""
    if module is None:
        return None
    version = getattr(module, "INTERFACE_VERSION", None)
    if version != KERNEL_INTERFACE_VERSION:
        warnings.warn(
            f"iou_aware._C is a stale build (interface {version}, this code needs {KERNEL_INTERFACE_VERSION}): "
            "the deformable convs use grid_sample until `make install` (or `pip install -e .`) rebuilds it."
        )
        return None
    return module


try:
    from .. import _C
except ImportError:  # built without a C++ compiler: "fused" is unavailable, "auto" uses grid_sample
    _C = None
_cpu_kernels = _usable_kernels(_C)

__all__ = [
    "DEFORM_CONV_IMPLS",
    "fused_kernel_available",
    "deform_conv3x3",
    "kernel_grid",
    "location_grid",
    "pyramid_levels",
    "ModulatedDeformConv",
    "PyramidDeformConv",
    "new_scratch_pool",
    "scratch_pool_limit_mb",
    "use_scratch_pool",
]

DEFORM_CONV_IMPLS = ("auto", "fused", "grid_sample", "torchvision")


def fused_kernel_available() -> bool:
    """Whether ``iou_aware._C`` (the "fused" implementation's CPU kernel) was built."""
    return _cpu_kernels is not None


def _fused_applies(feature: Tensor) -> bool:
    return (
        _cpu_kernels is not None
        and feature.device.type == "cpu"
        and feature.dtype in (torch.float32, torch.float64)
        and not torch.is_autocast_enabled("cpu")
        and not torch.jit.is_tracing()
        and not torch.jit.is_scripting()
    )


def kernel_grid(device=None, dtype=torch.float32) -> Tensor:
    """(9, 2) (dy, dx) of the taps of a 3x3 kernel, row-major, as deform_conv2d orders them."""
    d = torch.arange(-1, 2, device=device, dtype=dtype)
    dy, dx = torch.meshgrid(d, d, indexing="ij")
    return torch.stack([dy.flatten(), dx.flatten()], dim=1)


def location_grid(height: int, width: int, device=None, dtype=torch.float32) -> Tensor:
    """(2, H, W): the (y, x) index of every location."""
    rows = torch.arange(height, device=device, dtype=dtype)
    cols = torch.arange(width, device=device, dtype=dtype)
    return torch.stack(torch.meshgrid(rows, cols, indexing="ij"))


def pyramid_levels(level: int, num_levels: int) -> List[int]:
    """The level and its two neighbours (the two nearest on one side at the ends), as in LSNet."""
    if num_levels < 3:
        raise ValueError(f"The pyramid deformable conv needs at least 3 feature levels, got {num_levels}.")
    if level == 0:
        return [0, 1, 2]
    if level == num_levels - 1:
        return [level, level - 1, level - 2]
    return [level, level - 1, level + 1]


def deform_conv3x3(
    feature: Tensor,
    positions: Tensor,
    weight: Tensor,
    bias: Optional[Tensor] = None,
    mask: Optional[Tensor] = None,
    impl: str = "auto",
    scratch_pool: Optional[ScratchPool] = None,
) -> Tensor:
    """
    A 3x3 conv whose 9 taps at each output location are read at given positions of ``feature``.

    Args:
        feature: (N, Cin, h, w) the map the taps are read from.
        positions: (N, 9, 2, H, W) the (y, x) position of each tap in the index units of
            ``feature``; the output is H x W (which need not be h x w).
        weight: (Cout, Cin, 3, 3), tap k = 3 * ky + kx.
        bias: (Cout,) or None.
        mask: (N, 9, H, W) modulation of each tap (DCNv2), or None.
        impl: one of :data:`DEFORM_CONV_IMPLS`.
        scratch_pool: where "fused" keeps its taps matrices between calls (None: a pool for this
            call only, freed after the backward).

    Returns:
        (N, Cout, H, W).
    """
    if impl == "auto":
        impl = "fused" if _fused_applies(feature) else "grid_sample"
    if impl == "fused":
        if not _fused_applies(feature):
            raise RuntimeError(
                f"The 'fused' deformable conv needs iou_aware._C (built: {fused_kernel_available()}) and a CPU "
                f"float32 / float64 input outside autocast and tracing (got {feature.device}, {feature.dtype}, "
                f"autocast {torch.is_autocast_enabled('cpu')}); "
                "use MODEL.LSNET.DEFORM_CONV_IMPL auto or grid_sample."
            )
        pool = scratch_pool if scratch_pool is not None else ScratchPool(max_free_bytes=0)
        return _deform_conv_fused(feature, positions, weight, bias, mask, pool)
    if impl == "grid_sample":
        return _deform_conv_grid_sample(feature, positions, weight, bias, mask)
    if impl == "torchvision":
        return _deform_conv_torchvision(feature, positions, weight, bias, mask)
    check_choice("deformable conv implementation", impl, DEFORM_CONV_IMPLS)
    raise AssertionError(f"no implementation for {impl!r}")


def _deform_conv_grid_sample(feature, positions, weight, bias, mask) -> Tensor:
    n, channels, h, w = feature.shape
    out_h, out_w = positions.shape[-2:]
    # align_corners=False maps index p to the normalized coordinate (2p + 1) / size - 1.
    y = (2 * positions[:, :, 0] + 1) / h - 1
    x = (2 * positions[:, :, 1] + 1) / w - 1
    grid = torch.stack([x, y], dim=-1).reshape(n, 9 * out_h, out_w, 2).to(feature.dtype)
    taps = F.grid_sample(feature, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    taps = taps.reshape(n, channels, 9, out_h * out_w)
    if mask is not None:
        taps = taps * mask.reshape(n, 1, 9, out_h * out_w)
    # bmm with the weight broadcast over the batch reads the taps in place; torch.matmul would fold
    # the batch into the rows and copy the (N, HW, 9 Cin) transpose (2x slower, forward and backward).
    out = torch.bmm(
        weight.reshape(1, weight.shape[0], -1).expand(n, -1, -1), taps.reshape(n, channels * 9, out_h * out_w)
    )
    if bias is not None:
        out = out + bias[:, None]
    return out.reshape(n, -1, out_h, out_w)


SCRATCH_POOL_ENV = "IOU_AWARE_SCRATCH_POOL_MB"
DEFAULT_SCRATCH_POOL_MB = 2048


def scratch_pool_limit_mb() -> int:
    """The cap (MiB) of a deformable conv's taps pool: ``$IOU_AWARE_SCRATCH_POOL_MB``, else 2048
    (the taps of one training step at 512 px, batch 2, R-50-FPN: 1.2 GB). 0 keeps nothing."""
    value = os.environ.get(SCRATCH_POOL_ENV, "")
    try:
        limit = int(value) if value else DEFAULT_SCRATCH_POOL_MB
    except ValueError:
        raise ValueError(f"{SCRATCH_POOL_ENV} = {value!r}: give the cap of the taps pool in MiB (an integer >= 0).")
    if limit < 0:
        raise ValueError(f"{SCRATCH_POOL_ENV} = {limit}: give the cap of the taps pool in MiB (an integer >= 0).")
    return limit


def new_scratch_pool(limit_mb: Optional[int] = None) -> ScratchPool:
    """A taps pool for the fused convs of one model, capped at ``limit_mb`` MiB (None:
    :func:`scratch_pool_limit_mb`); its buffers are freed with it."""
    limit_mb = scratch_pool_limit_mb() if limit_mb is None else limit_mb
    return ScratchPool(max_free_bytes=int(limit_mb) * 1024**2)


class _FusedDeformConv3x3(torch.autograd.Function):
    """The "fused" implementation. Forward: the C++ kernel gathers the taps into a pooled
    (N * H * W, 9 * Cin) matrix, column ``k * Cin + c`` being input channel c at tap k times its
    modulation; a 1x1 conv (oneDNN, reading the matrix in place as a channels-last map) with the
    weight as (Cout, 9 * Cin) applies it. Backward: the weight's gradient from the taps, then the
    taps' gradient written over them (one matrix per call, not two), then the kernel's scatter."""

    @staticmethod
    def forward(ctx, feature, positions, weight, bias, mask, pool):
        n, channels = feature.shape[:2]
        out_h, out_w = positions.shape[-2:]
        feature_nhwc = feature.permute(0, 2, 3, 1).contiguous()
        positions = positions.contiguous()
        mask = mask.contiguous() if mask is not None else None
        taps = pool.take(n * out_h * out_w * 9 * channels, feature.dtype).view(-1, 9 * channels)
        _cpu_kernels.deform_gather_forward(feature_nhwc, positions, mask, taps)
        weight_1x1 = weight.permute(0, 2, 3, 1).reshape(weight.shape[0], -1, 1, 1)
        out = F.conv2d(taps.view(n, out_h, out_w, -1).permute(0, 3, 1, 2), weight_1x1, bias)
        if any(ctx.needs_input_grad):
            ctx.save_for_backward(feature_nhwc, positions, weight_1x1, mask)
            ctx.taps = taps  # not saved_tensors: it goes back to the pool in backward
            ctx.pool = pool
        else:
            pool.give(taps)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        if ctx.taps is None:
            raise RuntimeError(
                "The 'fused' deformable conv gives its buffers back after one backward; "
                "for retain_graph / repeated backward use MODEL.LSNET.DEFORM_CONV_IMPL grid_sample."
            )
        taps, ctx.taps = ctx.taps, None
        feature_nhwc, positions, weight_1x1, mask = ctx.saved_tensors
        need_feature, need_positions, need_weight, need_bias, need_mask = ctx.needs_input_grad[:5]
        cout, channels = weight_1x1.shape[0], feature_nhwc.shape[-1]
        weight_matrix = weight_1x1.view(cout, 9 * channels)  # column k * Cin + c, as the taps
        grad_rows = grad_out.permute(0, 2, 3, 1).reshape(-1, cout)  # (N * H * W, Cout)
        grad_feature = grad_positions = grad_weight = grad_bias = grad_mask = None
        if need_weight:
            grad_weight = grad_rows.t().mm(taps).view(cout, 3, 3, channels).permute(0, 3, 1, 2)
        if need_bias:
            grad_bias = grad_rows.sum(0)
        if need_feature or need_positions or need_mask:
            grad_taps = torch.mm(grad_rows, weight_matrix, out=taps)
            grad_feature, grad_positions, grad_mask = _cpu_kernels.deform_gather_backward(
                grad_taps, feature_nhwc, positions, mask
            )
            grad_feature = grad_feature.permute(0, 3, 1, 2) if need_feature else None
            grad_positions = grad_positions if need_positions else None
            grad_mask = grad_mask if need_mask else None
        ctx.pool.give(taps)
        ctx.pool = None
        return grad_feature, grad_positions, grad_weight, grad_bias, grad_mask, None


def _deform_conv_fused(feature, positions, weight, bias, mask, pool) -> Tensor:
    return _FusedDeformConv3x3.apply(feature, positions, weight, bias, mask, pool)


def _deform_conv_torchvision(feature, positions, weight, bias, mask) -> Tensor:
    out_h, out_w = positions.shape[-2:]
    # deform_conv2d's output size follows from its input size: a larger map is read with a conv
    # stride (its size ratio), a smaller one zero-padded up to the output size (samples outside a
    # map are zero either way), then the offsets are taken from where the taps would be without them.
    conv_stride = max(1, -(-feature.shape[-2] // out_h), -(-feature.shape[-1] // out_w))
    need_h, need_w = conv_stride * (out_h - 1) + 1, conv_stride * (out_w - 1) + 1
    pad_h, pad_w = max(need_h - feature.shape[-2], 0), max(need_w - feature.shape[-1], 0)
    if pad_h or pad_w:
        feature = F.pad(feature, (0, pad_w, 0, pad_h))
    feature = feature[..., : conv_stride * out_h, : conv_stride * out_w]
    default = conv_stride * location_grid(out_h, out_w, positions.device, positions.dtype)[None]
    default = default + kernel_grid(positions.device, positions.dtype)[:, :, None, None]  # (9, 2, H, W)
    offsets = (positions - default[None]).flatten(1, 2)  # (N, 18, H, W): (dy, dx) per tap
    return deform_conv2d(feature, offsets, weight, bias, stride=conv_stride, padding=1, mask=mask)


class ModulatedDeformConv(nn.Module):
    """DCNv2 3x3 conv: offsets and modulation predicted from the input by a zero-initialized conv,
    so that it starts as a plain conv (with modulation 0.5)."""

    def __init__(self, in_channels: int, out_channels: int, impl: str = "auto"):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, 3, 3))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        nn.init.normal_(self.weight, std=0.01)
        self.offset_conv = nn.Conv2d(in_channels, 3 * 9, kernel_size=3, padding=1)
        nn.init.zeros_(self.offset_conv.weight)
        nn.init.zeros_(self.offset_conv.bias)
        self.impl = impl
        self.scratch_pool: Optional[ScratchPool] = None  # set by the owning model (see new_scratch_pool)

    def forward(self, x: Tensor) -> Tensor:
        """(N, Cin, H, W) -> (N, Cout, H, W)."""
        n, _, h, w = x.shape
        offset, mask = self.offset_conv(x).split([18, 9], dim=1)
        taps = location_grid(h, w, x.device, x.dtype)[None] + kernel_grid(x.device, x.dtype)[:, :, None, None]
        positions = taps[None] + offset.reshape(n, 9, 2, h, w)
        return deform_conv3x3(x, positions, self.weight, self.bias, mask.sigmoid(), self.impl, self.scratch_pool)


class PyramidDeformConv(nn.Module):
    """
    One 3x3 deformable conv (no bias) whose 9 taps sit at given positions; applied with the same
    weights to the level itself and to its two neighbours (positions scaled by the ratio of the
    strides), the three outputs concatenated along channels, at the level's resolution.
    """

    def __init__(self, in_channels: int, out_channels: int, impl: str = "auto"):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, 3, 3))
        # As the reference (mmcv's kaiming_init): He normal over the fan-out.
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")
        self.impl = impl
        self.scratch_pool: Optional[ScratchPool] = None  # set by the owning model (see new_scratch_pool)

    def forward(self, features: Sequence[Tensor], strides: Sequence[int], level: int, positions: Tensor) -> Tensor:
        """
        Args:
            features: per level (N, Cin, Hl, Wl), fine to coarse.
            strides: per level stride in pixels.
            level: the level the output lives on.
            positions: (N, 9, 2, H, W) positions (y, x) of the taps in the index units of ``level``.

        Returns:
            (N, 3 * Cout, H, W): the conv on the level, then on its neighbours in the order of
            :func:`pyramid_levels`.
        """
        outputs = []
        for other in pyramid_levels(level, len(features)):
            scale = strides[level] / strides[other]  # index on `other` = index on `level` * scale
            outputs.append(
                deform_conv3x3(
                    features[other], positions * scale, self.weight, impl=self.impl, scratch_pool=self.scratch_pool
                )
            )
        return torch.cat(outputs, dim=1)


def use_scratch_pool(module: nn.Module, pool: Optional[ScratchPool]) -> None:
    """Let every deformable conv inside ``module`` keep its "fused" taps in ``pool`` (one pool per
    model: its buffers are freed with the model)."""
    for child in module.modules():
        if isinstance(child, (ModulatedDeformConv, PyramidDeformConv)):
            child.scratch_pool = pool
