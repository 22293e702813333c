"""Gradient clipping of the whole model's norm (the references' mmdetection grad_clip)."""

import pytest
import torch
from detectron2.config import get_cfg

from iou_aware.config import add_iou_aware_config
from iou_aware.engine import Trainer


def _cfg(clip_type, value=5.0):
    cfg = get_cfg()
    add_iou_aware_config(cfg)
    cfg.SOLVER.BASE_LR = 1.0
    cfg.SOLVER.MOMENTUM = 0.0
    cfg.SOLVER.WEIGHT_DECAY = 0.0
    cfg.SOLVER.WEIGHT_DECAY_NORM = 0.0
    cfg.SOLVER.CLIP_GRADIENTS.ENABLED = True
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = clip_type
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = value
    return cfg


def _step(cfg):
    """Two parameters with gradients (3, 4) (norm 5) and (0, 12) (norm 12): one SGD step at lr 1
    without momentum or decay moves each parameter by minus its clipped gradient."""
    model = torch.nn.Module()
    model.a = torch.nn.Parameter(torch.zeros(2))
    model.b = torch.nn.Parameter(torch.zeros(2))
    optimizer = Trainer.build_optimizer(cfg, model)
    model.a.grad = torch.tensor([3.0, 4.0])
    model.b.grad = torch.tensor([0.0, 12.0])
    optimizer.step()
    return -model.a.detach(), -model.b.detach()


def test_full_model_clipping_scales_all_gradients_together():
    # Total norm sqrt(25 + 144) = 13 -> scaled by 6.5 / 13 = 0.5 (up to clip_grad_norm_'s 1e-6).
    a, b = _step(_cfg("full_model", 6.5))
    torch.testing.assert_close(a, torch.tensor([1.5, 2.0]), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(b, torch.tensor([0.0, 6.0]), rtol=1e-5, atol=1e-6)


def test_detectron2_norm_clipping_is_per_parameter():
    # Each parameter on its own: a (norm 5) is below 6.5 and kept, b (norm 12) scaled to 6.5.
    a, b = _step(_cfg("norm", 6.5))
    torch.testing.assert_close(a, torch.tensor([3.0, 4.0]))
    torch.testing.assert_close(b, torch.tensor([0.0, 6.5]), rtol=1e-5, atol=1e-6)


def test_full_model_clipping_needs_a_positive_value():
    with pytest.raises(ValueError, match="CLIP_VALUE must be > 0"):
        _step(_cfg("full_model", 0.0))
