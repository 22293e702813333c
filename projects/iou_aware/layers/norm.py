"""The GroupNorm of the dense heads."""

from torch import nn

__all__ = ["group_norm_32"]


def group_norm_32(channels: int) -> nn.GroupNorm:
    """GroupNorm with 32 groups (fewer for fewer channels). Also usable as Detectron2's ``norm``
    callable: Detectron2 0.6's RetinaNetHead probes its norm with 1 channel, which the plain "GN"
    string (always 32 groups) cannot build."""
    return nn.GroupNorm(min(32, channels), channels)
