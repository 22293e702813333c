from .choices import check_choice
from .detectron2_compat import detectron2_has_compiled_ops
from .distributed import reduce_mean

__all__ = ["check_choice", "detectron2_has_compiled_ops", "reduce_mean"]
