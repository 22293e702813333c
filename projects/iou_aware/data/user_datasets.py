"""A user's own datasets, registered from the command line of train_net.py, demo/demo.py and the
tools (:func:`add_user_dataset_arguments`, :func:`register_user_datasets`):

* ``--register-coco NAME JSON IMAGE_ROOT``: COCO-format files;
* ``--register-voc NAME DIR SPLIT``: a PASCAL VOC-format folder (:mod:`iou_aware.data.voc`), its
  class names given by ``--voc-classes`` or read from its XML files (sorted, and logged).

COCO registration is Detectron2's ``register_coco_instances``; the keypoint metadata that its loader
does not read is taken from the JSON's categories, so that COCOEvaluator's OKS and the Visualizer
work without code:

* ``keypoints`` (names) -> ``keypoint_names``;
* ``keypoint_flip_map``: the pairs of names that differ only by left / right (``left_eye`` /
  ``right_eye``, ``l_hand`` / ``r_hand``, ``LeftKnee`` / ``RightKnee``);
* ``skeleton`` (1-based index pairs) -> ``keypoint_connection_rules`` (drawn in one colour).

:func:`oks_sigmas_for` gives COCOEvaluator the OKS sigmas of a keypoint set other than COCO's 17.
"""

import argparse
import json
import logging
import os
import re
from typing import Dict, List, Optional, Sequence, Tuple

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from detectron2.data.datasets.builtin_meta import COCO_PERSON_KEYPOINT_NAMES

from .voc import register_voc_dataset, voc_class_names

__all__ = [
    "COCO_KEYPOINT_OKS_SIGMAS",
    "add_register_coco_argument",
    "add_register_voc_argument",
    "add_user_dataset_arguments",
    "keypoint_metadata",
    "parse_class_names",
    "register_coco_datasets",
    "register_user_datasets",
    "register_voc_datasets",
    "oks_sigmas_for",
]

# pycocotools' sigmas of COCO's 17 person keypoints, by name.
COCO_KEYPOINT_OKS_SIGMAS = dict(
    zip(
        COCO_PERSON_KEYPOINT_NAMES,
        [
            0.026,
            0.025,
            0.025,
            0.035,
            0.035,
            0.079,
            0.079,
            0.072,
            0.072,
            0.062,
            0.062,
            0.107,
            0.107,
            0.087,
            0.087,
            0.089,
            0.089,
        ],
    )
)
_OTHER_SIDE = {"left": "right", "right": "left", "l": "r", "r": "l"}


def add_register_coco_argument(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``--register-coco NAME JSON_FILE IMAGE_ROOT`` (repeatable) to ``parser``."""
    parser.add_argument(
        "--register-coco",
        nargs=3,
        action="append",
        default=[],
        metavar=("NAME", "JSON_FILE", "IMAGE_ROOT"),
        help="register a COCO-format dataset under NAME (repeatable); use NAME in DATASETS.TRAIN / TEST",
    )
    return parser


def add_register_voc_argument(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``--register-voc NAME DIR SPLIT`` (repeatable) and ``--voc-classes`` to ``parser``."""
    parser.add_argument(
        "--register-voc",
        nargs=3,
        action="append",
        default=[],
        metavar=("NAME", "DIR", "SPLIT"),
        help="register split SPLIT of the PASCAL VOC-format folder DIR (Annotations/, JPEGImages/, "
        "ImageSets/Main/SPLIT.txt) under NAME (repeatable); use NAME in DATASETS.TRAIN / TEST",
    )
    parser.add_argument(
        "--voc-classes",
        default="",
        metavar="NAMES",
        help="class names of the --register-voc datasets, in category-id order: comma-separated, or a "
        "text file with one name a line (default: the sorted names found in their XML files)",
    )
    return parser


def add_user_dataset_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add every user-dataset option (``--register-coco``, ``--register-voc``, ``--voc-classes``)."""
    return add_register_voc_argument(add_register_coco_argument(parser))


def _mirror(name: str) -> Optional[str]:
    """The other side's name of a left / right keypoint name (``left_eye``, ``L-hand``,
    ``LeftKnee``), None if it names no side."""
    tokens = re.split(r"([_\-\s.])", name)
    for i, token in enumerate(tokens):
        other = _OTHER_SIDE.get(token.lower())
        if other is not None:
            tokens[i] = (
                other.upper()
                if token.isupper() and len(token) > 1
                else (other.capitalize() if token[0].isupper() else other)
            )
            return "".join(tokens)
    camel = re.match(r"^(Left|Right)(?=[A-Z0-9])", name)
    if camel:
        return ("Right" if camel.group(1) == "Left" else "Left") + name[camel.end() :]
    return None


def keypoint_metadata(categories: Sequence[Dict]) -> Dict:
    """Detectron2 keypoint metadata from COCO categories (the first one with ``keypoints``)."""
    category = next((c for c in categories if c.get("keypoints")), None)
    if category is None:
        return {}
    names = list(category["keypoints"])
    flip_map = []
    for name in names:
        other = _mirror(name)
        if other in names and (other, name) not in flip_map and other != name:
            flip_map.append((name, other))
    skeleton = category.get("skeleton") or []
    rules = [
        (names[a - 1], names[b - 1], (102, 204, 255))
        for a, b in skeleton
        if 0 < a <= len(names) and 0 < b <= len(names)
    ]
    return {"keypoint_names": names, "keypoint_flip_map": flip_map, "keypoint_connection_rules": rules}


def register_coco_datasets(specs: Sequence[Sequence[str]]) -> List[str]:
    """Register each (name, json_file, image_root) with Detectron2's ``register_coco_instances``
    plus the keypoint metadata of its categories. A name registered before is replaced.

    Returns:
        the registered names.
    """
    names = []
    for name, json_file, image_root in specs:
        with open(json_file) as f:
            categories = json.load(f).get("categories", [])
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
        register_coco_instances(name, keypoint_metadata(categories), json_file, image_root)
        names.append(name)
    return names


def parse_class_names(value: str) -> List[str]:
    """Class names from ``--voc-classes``: a text file with one name a line, else comma-separated."""
    if os.path.isfile(value):
        with open(value) as f:
            return [line.strip() for line in f if line.strip()]
    return [name.strip() for name in value.split(",") if name.strip()]


def register_voc_datasets(specs: Sequence[Sequence[str]], class_names: Optional[Sequence[str]] = None) -> List[str]:
    """Register each (name, dirname, split) with :func:`iou_aware.data.voc.register_voc_dataset`.

    Args:
        class_names: in category-id order; None: the sorted object names of all XML files of the
            folders (one list for all, so the splits agree), logged.
    Returns:
        the registered names.
    """
    if not specs:
        return []
    if not class_names:
        class_names = voc_class_names(dict.fromkeys(dirname for _, dirname, _ in specs))
        # Category ids follow from the names found: said once, as Detectron2 says an id remapping.
        logging.getLogger(__name__).warning(
            "--register-voc %s: %d classes read from the XML files (sorted; category ids in this order; "
            "--voc-classes fixes them): %s",
            ", ".join(name for name, _, _ in specs),
            len(class_names),
            ", ".join(class_names),
        )
    for name, dirname, split in specs:
        register_voc_dataset(name, dirname, split, class_names)
    return [name for name, _, _ in specs]


def register_user_datasets(args: argparse.Namespace) -> List[str]:
    """Register the datasets of the options of :func:`add_user_dataset_arguments` (absent options
    count as none); returns the registered names."""
    voc_classes = getattr(args, "voc_classes", "")
    return register_coco_datasets(getattr(args, "register_coco", None) or []) + register_voc_datasets(
        getattr(args, "register_voc", None) or [], parse_class_names(voc_classes) if voc_classes else None
    )


def oks_sigmas_for(cfg, dataset_names: Sequence[str]) -> Tuple[float, ...]:
    """The OKS sigmas to evaluate ``dataset_names`` with: ``TEST.KEYPOINT_OKS_SIGMAS`` when set,
    none for COCO's 17 keypoints (pycocotools' own), else COCO's sigma of each keypoint named as
    in COCO. Raises ValueError naming the key when a keypoint has no known sigma."""
    if cfg.TEST.KEYPOINT_OKS_SIGMAS or not cfg.MODEL.KEYPOINT_ON:
        return tuple(cfg.TEST.KEYPOINT_OKS_SIGMAS)
    for name in dataset_names:
        keypoint_names = MetadataCatalog.get(name).get("keypoint_names", None)
        if keypoint_names is None or list(keypoint_names) == list(COCO_PERSON_KEYPOINT_NAMES):
            continue
        unknown = [n for n in keypoint_names if n not in COCO_KEYPOINT_OKS_SIGMAS]
        if unknown:
            raise ValueError(
                f"Dataset {name} has keypoints without a known OKS sigma ({unknown[:5]}{'...' if len(unknown) > 5 else ''}): "
                f"set TEST.KEYPOINT_OKS_SIGMAS to {len(keypoint_names)} values, one per keypoint in the JSON's order."
            )
        return tuple(COCO_KEYPOINT_OKS_SIGMAS[n] for n in keypoint_names)
    return ()
