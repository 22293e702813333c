#!/usr/bin/env python
"""Installs the ``iou_aware`` package (a Detectron2 project) from ``projects/iou_aware``.

Torch, torchvision and Detectron2 are installed by ``scripts/install.sh`` (``make install``):
Detectron2 is not on PyPI, and torch must match the installed CUDA, so they are not listed here.
"""

from setuptools import find_packages, setup


def cpu_extensions():
    """``iou_aware._C``: the CPU kernel of the "fused" deformable conv (MODEL.LSNET.DEFORM_CONV_IMPL).
    Optional: without a C++ compiler the package installs without it, and the deformable convs
    fall back to ``F.grid_sample`` (iou_aware.layers.deformable)."""
    try:
        from torch.utils.cpp_extension import BuildExtension, CppExtension
    except ImportError:  # torch is installed first by scripts/install.sh; a bare `pip install .` skips the kernel
        return {}, []

    class OptionalBuildExtension(BuildExtension):
        """Builds the optional extensions where it can and says why not elsewhere: torch's ninja
        build raises errors that setuptools' own ``optional`` handling does not catch."""

        def build_extension(self, ext):
            try:
                super().build_extension(ext)
            except Exception as error:  # noqa: BLE001 - any build failure of an optional extension
                if not getattr(ext, "optional", False):
                    raise
                print(
                    f"WARNING: the optional extension {ext.name} was not built ({error}); "
                    "the deformable convs fall back to F.grid_sample."
                )

    extension = CppExtension(
        "iou_aware._C",
        ["projects/iou_aware/layers/csrc/deform_gather.cpp"],
        extra_compile_args=["-O3", "-fopenmp-simd"],
        optional=True,
    )
    return {"build_ext": OptionalBuildExtension}, [extension]


CMDCLASS, EXT_MODULES = cpu_extensions()

# The configs travel inside the package (iou_aware/model_zoo/configs is a link to configs/ in the
# source tree; the wheel holds the files), so an installed iou_aware finds them by iou_aware://.
# The .py files are LazyConfigs (data, not modules of the package), common/ their shared pieces.
CONFIG_FILES = ["configs/*.yaml", "configs/*/*.yaml", "configs/*/*.py", "configs/*/*/*.py"]

setup(
    name="iou_aware",
    version="0.1.0",
    description="Localization-quality-aware dense detectors (IoU-aware RetinaNet, GFL V1/V2, "
    "LSNet, Focal IoU losses) for Detectron2",
    package_dir={"iou_aware": "projects/iou_aware"},
    packages=["iou_aware"] + ["iou_aware." + p for p in find_packages(where="projects/iou_aware")],
    package_data={"iou_aware.model_zoo": CONFIG_FILES},
    ext_modules=EXT_MODULES,
    cmdclass=CMDCLASS,
    python_requires=">=3.9",
    install_requires=[
        "numpy",
        "opencv-python-headless",
        "pycocotools",
        "fvcore",
        "matplotlib",
    ],
    # tools/export.py --format onnx: the export and the ONNX Runtime check.
    extras_require={"onnx": ["onnx", "onnxruntime"]},
)
