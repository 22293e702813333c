"""Detectron2's optimizer, plus gradient clipping of the whole model's norm.

Detectron2's ``SOLVER.CLIP_GRADIENTS.CLIP_TYPE: "norm"`` clips each parameter's gradient on its
own; mmdetection's ``grad_clip=dict(max_norm=35, norm_type=2)`` (the LSNet and IoU-aware references)
clips the norm of all gradients together, which is what ``"full_model"`` does here (the name
Detectron2's DeepLab and Mask2Former projects use for it).
"""

import itertools

import torch
from detectron2.config import CfgNode
from detectron2.solver import build_optimizer as build_detectron2_optimizer

__all__ = ["FULL_MODEL_CLIP_TYPE", "build_optimizer", "clip_full_model_gradients"]

FULL_MODEL_CLIP_TYPE = "full_model"


def build_optimizer(cfg: CfgNode, model: torch.nn.Module) -> torch.optim.Optimizer:
    """Detectron2's ``build_optimizer``; with ``CLIP_GRADIENTS.CLIP_TYPE: "full_model"`` each step
    first scales all gradients together so that their ``NORM_TYPE`` norm is at most
    ``CLIP_VALUE`` (``torch.nn.utils.clip_grad_norm_``)."""
    clip = cfg.SOLVER.CLIP_GRADIENTS
    if not (clip.ENABLED and clip.CLIP_TYPE == FULL_MODEL_CLIP_TYPE):
        return build_detectron2_optimizer(cfg, model)
    plain = cfg.clone()
    plain.defrost()
    plain.SOLVER.CLIP_GRADIENTS.ENABLED = False
    optimizer = build_detectron2_optimizer(plain, model)
    return clip_full_model_gradients(optimizer, clip.CLIP_VALUE, clip.NORM_TYPE, key="SOLVER.CLIP_GRADIENTS.CLIP_VALUE")


def clip_full_model_gradients(
    optimizer: torch.optim.Optimizer, max_norm: float, norm_type: float = 2.0, key: str = "max_norm"
) -> torch.optim.Optimizer:
    """Make each ``optimizer.step`` first scale all gradients together so that their
    ``norm_type`` norm is at most ``max_norm`` (``torch.nn.utils.clip_grad_norm_``); in place.
    ``key`` names the setting in the error for ``max_norm <= 0``."""
    if max_norm <= 0:
        raise ValueError(f"{key} must be > 0, got {max_norm}.")
    max_norm, norm_type = float(max_norm), float(norm_type)

    class FullModelGradientClipping(type(optimizer)):
        def step(self, closure=None):
            params = itertools.chain(*[group["params"] for group in self.param_groups])
            torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type=norm_type)
            return super().step(closure)

    optimizer.__class__ = FullModelGradientClipping
    return optimizer
