from .detectron2_build import detectron2_has_compiled_ops
from .distributed import reduce_mean
from .scratch_pool import ScratchPool

__all__ = ["ScratchPool", "detectron2_has_compiled_ops", "reduce_mean"]
