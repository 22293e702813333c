"""
Deformable 3x3 convolutions whose taps sit at arbitrary positions: a modulated deformable conv
(DCNv2) for LSNet's towers, and LSNet's pyramid deformable conv, which samples the same points on a
feature level and on its two neighbours.

Positions are given in the index units of the level the output lives on: (y, x) = (i, j) is the
centre of output location (i, j), a level's index i being pixel ``i * stride``. Samples are bilinear
with zeros outside the feature map, as in every DCN.

Two implementations of the same operation (``impl``), both needing no compiled Detectron2:

* "grid_sample": ``F.grid_sample`` gathers the taps, one matmul applies the weights. About 8x
  faster than torchvision's kernel for a training step on CPU (forward 3x, backward 10x).
* "torchvision": ``torchvision.ops.deform_conv2d``, the reference the tests compare against.
"""
from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import deform_conv2d

__all__ = [
    "DEFORM_CONV_IMPLS",
    "deform_conv3x3",
    "kernel_grid",
    "location_grid",
    "pyramid_levels",
    "ModulatedDeformConv",
    "PyramidDeformConv",
]

DEFORM_CONV_IMPLS = ("grid_sample", "torchvision")


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
    impl: str = "grid_sample",
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

    Returns:
        (N, Cout, H, W).
    """
    if impl == "grid_sample":
        return _deform_conv_grid_sample(feature, positions, weight, bias, mask)
    if impl == "torchvision":
        return _deform_conv_torchvision(feature, positions, weight, bias, mask)
    raise ValueError(f"Unknown deformable conv implementation {impl!r}; use one of {DEFORM_CONV_IMPLS}.")


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
    out = torch.bmm(weight.reshape(1, weight.shape[0], -1).expand(n, -1, -1), taps.reshape(n, channels * 9, out_h * out_w))
    if bias is not None:
        out = out + bias[:, None]
    return out.reshape(n, -1, out_h, out_w)


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

    def __init__(self, in_channels: int, out_channels: int, impl: str = "grid_sample"):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, 3, 3))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        nn.init.normal_(self.weight, std=0.01)
        self.offset_conv = nn.Conv2d(in_channels, 3 * 9, kernel_size=3, padding=1)
        nn.init.zeros_(self.offset_conv.weight)
        nn.init.zeros_(self.offset_conv.bias)
        self.impl = impl

    def forward(self, x: Tensor) -> Tensor:
        """(N, Cin, H, W) -> (N, Cout, H, W)."""
        n, _, h, w = x.shape
        offset, mask = self.offset_conv(x).split([18, 9], dim=1)
        taps = location_grid(h, w, x.device, x.dtype)[None] + kernel_grid(x.device, x.dtype)[:, :, None, None]
        positions = taps[None] + offset.reshape(n, 9, 2, h, w)
        return deform_conv3x3(x, positions, self.weight, self.bias, mask.sigmoid(), self.impl)


class PyramidDeformConv(nn.Module):
    """
    One 3x3 deformable conv (no bias) whose 9 taps sit at given positions; applied with the same
    weights to the level itself and to its two neighbours (positions scaled by the ratio of the
    strides), the three outputs concatenated along channels, at the level's resolution.
    """

    def __init__(self, in_channels: int, out_channels: int, impl: str = "grid_sample"):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, 3, 3))
        # As the reference (mmcv's kaiming_init): He normal over the fan-out.
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")
        self.impl = impl

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
            outputs.append(deform_conv3x3(features[other], positions * scale, self.weight, impl=self.impl))
        return torch.cat(outputs, dim=1)
