"""Placeholder for Detectron2's compiled extension ``detectron2._C``.

Installed by iou_aware's ``scripts/install.sh`` when Detectron2 comes from the PyPI source
distribution ``pb1-detectron2==0.6``, which lacks the C++/CUDA sources (``detectron2/layers/csrc``).
Everything that does not need compiled ops works. Using a compiled op raises
:class:`MissingCompiledOpError`, which names the op and says how to get the official build.
iou_aware itself never needs ``_C``: it uses ``torchvision.ops.deform_conv2d`` for deformable
convolution and passes ``use_fast_impl=False`` to COCOEvaluator when this placeholder is present.
"""

IS_IOU_AWARE_PLACEHOLDER = True

_HOW_TO_FIX = (
    "This Detectron2 was installed without its compiled extension (detectron2._C is iou_aware's "
    "placeholder). Install the official Detectron2 from source to get it: "
    "`git clone https://github.com/facebookresearch/detectron2 && "
    "pip install --no-build-isolation -e detectron2`, then rerun `make install` "
    "(see iou_aware's docs/install.md, 'Detectron2 builds')."
)


class MissingCompiledOpError(AttributeError):
    """A compiled Detectron2 op was used but only the placeholder is installed.

    Subclasses AttributeError so that ``hasattr(_C, op)`` keeps answering False.
    """


def get_compiler_version():
    return "not built (iou_aware placeholder for detectron2._C)"


def get_cuda_version():
    return "not built (iou_aware placeholder for detectron2._C)"


def has_cuda():
    return False


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    raise MissingCompiledOpError(
        f"detectron2._C.{name} is a compiled Detectron2 op and is not available. " + _HOW_TO_FIX
    )
