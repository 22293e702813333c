"""
LSNet's landmark head (Duan et al., https://arxiv.org/abs/2104.04899): one module for every
landmark task, switched by configuration.

Every location (anchor point) of every level predicts each of its landmark sets as L vectors in the
form of crosses [y-, y+, x-, x+] (non-negative, in units of the level's stride), twice:

* initial crosses, from plain convs on the set's tower;
* refined crosses, ``softplus(raw + initial.detach())``, where ``raw`` is predicted from features
  sampled by a pyramid deformable conv at 9 points taken from the initial landmarks (some of the
  landmarks plus free points), on the level and its two neighbours.

Class logits are predicted from the class tower sampled at the points of the task's main set.
A task is one or more landmark sets (:data:`TASK_LANDMARK_SETS`): "box" (extreme points),
"contour" (instance masks) and "keypoint" (pose, with a box set beside the keypoints, as in the
reference code).
"""

import math
from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from torch import Tensor, nn

from ..layers import crosses_to_offsets, group_norm_32
from ..layers.deformable import (
    DEFORM_CONV_IMPLS,
    ModulatedDeformConv,
    PyramidDeformConv,
    fused_kernel_available,
    location_grid,
    new_scratch_pool,
    use_scratch_pool,
)
from ..structures import TASK_LANDMARK_SETS, LandmarkSet, landmark_sets
from ..utils import check_choice

__all__ = [
    "INITIAL_CONV_INITS",
    "LandmarkBranch",
    "LandmarkHead",
]


# MODEL.LSNET.INITIAL_CONV_INIT; the first is the reference's.
INITIAL_CONV_INITS = ("normal", "kaiming")


def _conv_block(in_channels: int, out_channels: int, deformable: bool, impl: str) -> nn.Sequential:
    conv = (
        ModulatedDeformConv(in_channels, out_channels, impl)
        if deformable
        else nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
    )
    if not deformable:
        nn.init.normal_(conv.weight, std=0.01)
        nn.init.zeros_(conv.bias)
    return nn.Sequential(conv, group_norm_32(out_channels), nn.ReLU(inplace=True))


def _tower(in_channels: int, channels: int, num_convs: int, deformable: bool, impl: str) -> nn.Sequential:
    """``num_convs`` conv blocks, the first from ``in_channels`` to ``channels``."""
    if num_convs < 1 and in_channels != channels:
        raise ValueError(f"A tower without convs cannot map {in_channels} to {channels} channels.")
    widths = [in_channels] + [channels] * num_convs
    return nn.Sequential(*[_conv_block(widths[i], channels, deformable, impl) for i in range(num_convs)])


def _conv(in_channels: int, out_channels: int, kernel_size: int, std: float = 0.01, bias: float = 0.0) -> nn.Conv2d:
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
    nn.init.normal_(conv.weight, std=std)
    nn.init.constant_(conv.bias, bias)
    return conv


class _LandmarkGuidedBranch(nn.Module):
    """Features sampled at the 9 points on three levels -> 1x1 fuse + ReLU, plus a 3x3 conv of
    the level's own tower features -> GN -> ReLU -> 1x1 prediction."""

    def __init__(self, channels: int, out_channels: int, impl: str, out_bias: float = 0.0):
        super().__init__()
        self.sample = PyramidDeformConv(channels, channels, impl)
        self.fuse = _conv(3 * channels, channels, 1)
        self.local = _conv(channels, channels, 3)
        self.norm = group_norm_32(channels)
        self.predict = _conv(channels, out_channels, 1, bias=out_bias)

    def forward(self, towers: List[Tensor], strides: List[int], level: int, positions: Tensor) -> Tensor:
        sampled = F.relu(self.fuse(self.sample(towers, strides, level, positions)))
        return self.predict(F.relu(self.norm(sampled + self.local(towers[level]))))


class LandmarkBranch(nn.Module):
    """One landmark set: tower -> initial crosses (+ free sampling points) -> refined crosses."""

    def __init__(
        self,
        landmark_set: LandmarkSet,
        in_channels: int,
        channels: int,
        num_convs: int,
        deformable_towers: bool,
        deform_conv_impl: str,
        num_kernel_points: int,
        gradient_mul: float,
        initial_conv_init: str = "normal",
    ):
        """``initial_conv_init``: one of :data:`INITIAL_CONV_INITS`, the initialization of the 3x3
        conv before the initial prediction. "normal" (std 0.01, the reference) puts two std-0.01
        layers in a row with no norm between them: at initialization the gradient of the initial
        landmark loss that reaches the tower and the prediction conv is smaller than with
        "kaiming" (He normal over the fan-out; docs/models/lsnet.md, "Beyond the paper")."""
        super().__init__()
        self.landmark_set = landmark_set
        self.gradient_mul = gradient_mul
        self.num_free_points = num_kernel_points - len(landmark_set.kernel_landmarks)
        num_landmarks = landmark_set.num_landmarks
        self.tower = _tower(in_channels, channels, num_convs, deformable_towers, deform_conv_impl)
        self.init_conv = _conv(channels, channels, 3)
        if initial_conv_init == "kaiming":
            nn.init.kaiming_normal_(self.init_conv.weight, mode="fan_out", nonlinearity="relu")
        self.init_pred = _conv(channels, 4 * num_landmarks + 2 * self.num_free_points, 1)
        self.refine = _LandmarkGuidedBranch(channels, 4 * num_landmarks, deform_conv_impl)

    def initial(self, tower: Tensor) -> Tuple[Tensor, Tensor]:
        """
        Args:
            tower: (N, C, H, W) this branch's tower features of one level.

        Returns:
            initial crosses (N, 4 * L, H, W) and the (N, 9, 2, H, W) positions (y, x) of the
            deformable conv's taps in the level's index units: each location plus its kernel
            landmarks' vectors, then its free points.
        """
        out = self.init_pred(F.relu(self.init_conv(tower)))
        num_cross_channels = 4 * self.landmark_set.num_landmarks
        init = F.softplus(out[:, :num_cross_channels])
        n, _, h, w = init.shape
        crosses = init.reshape(n, self.landmark_set.num_landmarks, 4, h, w).permute(0, 3, 4, 1, 2)
        kernel = list(self.landmark_set.kernel_landmarks)
        offsets = crosses_to_offsets(crosses)[..., kernel, :].flip(-1)  # (N, H, W, k, 2) as (dy, dx)
        if self.num_free_points:
            free = out[:, num_cross_channels:].reshape(n, self.num_free_points, 2, h, w).permute(0, 3, 4, 1, 2)
            offsets = torch.cat([offsets, free], dim=3)
        # Contours and keypoints have no free point: no reshape of their empty channel slice,
        # which the ONNX exporter's shape inference divides by (it dies with SIGFPE).
        points = offsets.permute(0, 3, 4, 1, 2)  # (N, 9, 2, H, W)
        points = (1 - self.gradient_mul) * points.detach() + self.gradient_mul * points
        return init, points + location_grid(h, w, init.device, init.dtype)

    def refined(self, towers: List[Tensor], strides: List[int], level: int, positions: Tensor, init: Tensor) -> Tensor:
        """(N, 4 * L, H, W) refined crosses of ``level``."""
        return F.softplus(self.refine(towers, strides, level, positions) + init.detach())


class LandmarkHead(nn.Module):
    """Class and landmark predictions of LSNet for one task (see module docstring)."""

    @configurable
    def __init__(
        self,
        *,
        input_shape: List[ShapeSpec],
        num_classes: int,
        task: str = "box",
        num_convs: int = 3,
        feat_channels: int = 0,
        deformable_towers: bool = False,
        num_kernel_points: int = 9,
        gradient_mul: float = 0.1,
        prior_prob: float = 0.01,
        deform_conv_impl: str = "auto",
        initial_conv_init: str = "normal",
        num_keypoints: int = 17,
        num_contour_points: int = 36,
        scratch_pool_mb: int = -1,
    ):
        """
        Args:
            input_shape: ShapeSpec of each input level (same channels), fine to coarse.
            num_classes: number of foreground classes.
            task: a key of :data:`TASK_LANDMARK_SETS`.
            num_convs: conv3x3 + GN + ReLU layers per tower.
            feat_channels: channels of the towers and of everything after them (the first tower
                conv maps the input to them); 0: the input's channels, as the reference.
            deformable_towers: DCNv2 convs in the towers instead of plain convs.
            num_kernel_points: taps of the landmark-guided deformable conv (9 = 3x3).
            gradient_mul: share of the gradient that flows from the sampling points back into
                the initial landmarks.
            prior_prob: initial foreground probability of the class logits.
            deform_conv_impl: one of :data:`iou_aware.layers.deformable.DEFORM_CONV_IMPLS`.
            initial_conv_init: one of :data:`INITIAL_CONV_INITS` (see :class:`LandmarkBranch`).
            num_keypoints, num_contour_points: the landmark schema (:func:`landmark_sets`).
            scratch_pool_mb: cap (MiB) of the pool where the "fused" deformable convs keep their
                taps between steps; -1: ``$IOU_AWARE_SCRATCH_POOL_MB``, else 2048. The pool is
                the head's own and is freed with it.
        """
        super().__init__()
        check_choice("MODEL.LSNET.TASK", task, sorted(TASK_LANDMARK_SETS))
        if num_kernel_points != 9:
            raise ValueError(
                f"MODEL.LSNET.NUM_KERNEL_POINTS = {num_kernel_points}; only 9 (a 3x3 kernel) is supported."
            )
        check_choice("MODEL.LSNET.DEFORM_CONV_IMPL", deform_conv_impl, DEFORM_CONV_IMPLS)
        if deform_conv_impl == "fused" and not fused_kernel_available():
            raise ValueError(
                "MODEL.LSNET.DEFORM_CONV_IMPL = 'fused' needs iou_aware._C, which was not built (no C++ compiler "
                "when the package was installed?): reinstall with `make install` and read its log, or use 'auto'."
            )
        check_choice("MODEL.LSNET.INITIAL_CONV_INIT", initial_conv_init, INITIAL_CONV_INITS)
        channels = {s.channels for s in input_shape}
        if len(channels) != 1:
            raise ValueError(f"LSNet's head needs inputs with equal channels, got {sorted(channels)}.")
        in_channels = channels.pop()
        if feat_channels < 0:
            raise ValueError(
                f"MODEL.LSNET.FEAT_CHANNELS = {feat_channels}; use 0 (the input's channels) or a positive width."
            )
        channels = feat_channels or in_channels
        self.task = task
        self.num_contour_points = num_contour_points
        self.strides = [s.stride for s in input_shape]
        self.num_classes = num_classes
        schema = landmark_sets(num_keypoints, num_contour_points, num_kernel_points)
        self.cls_tower = _tower(in_channels, channels, num_convs, deformable_towers, deform_conv_impl)
        bias = -math.log((1 - prior_prob) / prior_prob)
        self.cls_branch = _LandmarkGuidedBranch(channels, num_classes, deform_conv_impl, out_bias=bias)
        self.branches = nn.ModuleDict(
            {
                name: LandmarkBranch(
                    schema[name],
                    in_channels,
                    channels,
                    num_convs,
                    deformable_towers,
                    deform_conv_impl,
                    num_kernel_points,
                    gradient_mul,
                    initial_conv_init,
                )
                for name in TASK_LANDMARK_SETS[task]
            }
        )
        self.guide = TASK_LANDMARK_SETS[task][-1]
        self.scratch_pool = new_scratch_pool(None if scratch_pool_mb < 0 else scratch_pool_mb)
        use_scratch_pool(self, self.scratch_pool)

    @classmethod
    def from_config(cls, cfg, input_shape: List[ShapeSpec]):
        node = cfg.MODEL.LSNET
        return {
            "input_shape": input_shape,
            "num_classes": node.NUM_CLASSES,
            "task": node.TASK,
            "num_convs": node.NUM_CONVS,
            "feat_channels": node.FEAT_CHANNELS,
            "deformable_towers": node.DEFORMABLE_TOWERS,
            "num_kernel_points": node.NUM_KERNEL_POINTS,
            "gradient_mul": node.GRADIENT_MUL,
            "prior_prob": node.PRIOR_PROB,
            "deform_conv_impl": node.DEFORM_CONV_IMPL,
            "initial_conv_init": node.INITIAL_CONV_INIT,
            "num_keypoints": cfg.MODEL.ROI_KEYPOINT_HEAD.NUM_KEYPOINTS,
            "num_contour_points": node.NUM_CONTOUR_POINTS,
            "scratch_pool_mb": node.DEFORM_CONV_POOL_MB,
        }

    @property
    def landmark_sets(self) -> Dict[str, LandmarkSet]:
        """The task's landmark sets by name, in output order."""
        return {name: branch.landmark_set for name, branch in self.branches.items()}

    def forward(self, features: List[Tensor]) -> List[List[Tensor]]:
        """
        Args:
            features: per level (N, C, Hi, Wi), fine to coarse, strides as in ``input_shape``.

        Returns:
            Lists over the levels: class logits (N, K, Hi, Wi), then for each landmark set (in
            the order of :attr:`landmark_sets`) its initial crosses and its refined crosses,
            each (N, 4 * L, Hi, Wi), channel ``4 * l + c`` being channel c of [y-, y+, x-, x+]
            of landmark l, in units of the level's stride.
        """
        if len(features) != len(self.strides):
            raise ValueError(f"LSNet's head was built for {len(self.strides)} levels, got {len(features)}.")
        cls_towers = [self.cls_tower(x) for x in features]
        towers = {name: [branch.tower(x) for x in features] for name, branch in self.branches.items()}
        logits = []
        crosses = {name: ([], []) for name in self.branches}
        for level in range(len(features)):
            positions = {}
            for name, branch in self.branches.items():
                init, positions[name] = branch.initial(towers[name][level])
                refined = branch.refined(towers[name], self.strides, level, positions[name], init)
                crosses[name][0].append(init)
                crosses[name][1].append(refined)
            logits.append(self.cls_branch(cls_towers, self.strides, level, positions[self.guide]))
        outputs = [logits]
        for init, refined in crosses.values():
            outputs += [init, refined]
        return outputs
