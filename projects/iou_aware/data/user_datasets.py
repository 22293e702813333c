"""A user's own COCO-format files, registered from the command line (``--register-coco NAME JSON
IMAGE_ROOT`` of train_net.py, demo/demo.py and the tools).

Registration is Detectron2's ``register_coco_instances``; the keypoint metadata that its loader
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
import re
from typing import Dict, List, Optional, Sequence, Tuple

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from detectron2.data.datasets.builtin_meta import COCO_PERSON_KEYPOINT_NAMES

__all__ = [
    "COCO_KEYPOINT_OKS_SIGMAS",
    "add_register_coco_argument",
    "keypoint_metadata",
    "register_coco_datasets",
    "oks_sigmas_for",
]

# pycocotools' sigmas of COCO's 17 person keypoints, by name.
COCO_KEYPOINT_OKS_SIGMAS = dict(
    zip(
        COCO_PERSON_KEYPOINT_NAMES,
        [0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089],
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


def _mirror(name: str) -> Optional[str]:
    """The other side's name of a left / right keypoint name (``left_eye``, ``L-hand``,
    ``LeftKnee``), None if it names no side."""
    tokens = re.split(r"([_\-\s.])", name)
    for i, token in enumerate(tokens):
        other = _OTHER_SIDE.get(token.lower())
        if other is not None:
            tokens[i] = other.upper() if token.isupper() and len(token) > 1 else (other.capitalize() if token[0].isupper() else other)
            return "".join(tokens)
    camel = re.match(r"^(Left|Right)(?=[A-Z0-9])", name)
    if camel:
        return ("Right" if camel.group(1) == "Left" else "Left") + name[camel.end():]
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
    rules = [(names[a - 1], names[b - 1], (102, 204, 255)) for a, b in skeleton if 0 < a <= len(names) and 0 < b <= len(names)]
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
