#!/usr/bin/env python
"""Installs the ``iou_aware`` package (a Detectron2 project) from ``projects/iou_aware``.

Torch, torchvision and Detectron2 are installed by ``scripts/install.sh`` (``make install``):
Detectron2 is not on PyPI, and torch must match the installed CUDA, so they are not listed here.
"""
from setuptools import find_packages, setup

# The configs travel inside the package (iou_aware/model_zoo/configs is a link to configs/ in the
# source tree; the wheel holds the files), so an installed iou_aware finds them by iou_aware://.
CONFIG_FILES = ["configs/*.yaml", "configs/*/*.yaml"]

setup(
    name="iou_aware",
    version="0.1.0",
    description="Localization-quality-aware dense detectors (IoU-aware RetinaNet, GFL V1/V2, "
    "LSNet, Focal IoU losses) for Detectron2",
    package_dir={"iou_aware": "projects/iou_aware"},
    packages=["iou_aware"]
    + ["iou_aware." + p for p in find_packages(where="projects/iou_aware")],
    package_data={"iou_aware.model_zoo": CONFIG_FILES},
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
