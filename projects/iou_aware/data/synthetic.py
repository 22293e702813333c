"""Synthetic datasets written once as PNG + COCO JSON into a cache and registered with Detectron2.

``shapes_{train,val}`` (boxes, masks) and ``stickmen_{train,val}`` (boxes, masks, 17 keypoints) are
registered when ``iou_aware`` is imported; the files are generated on first use. Generation is
deterministic: image ``i`` of a dataset is drawn from ``numpy.random.default_rng([seed, i])``.
"""

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
from typing import Callable, Dict, List, Optional

import cv2
import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json
from detectron2.data.datasets.builtin_meta import KEYPOINT_CONNECTION_RULES

from ..utils import check_choice
from .shapes import SHAPE_CLASSES, render_shapes_image
from .stickmen import KEYPOINT_FLIP_MAP, KEYPOINT_NAMES, SKELETON, render_stickmen_image

__all__ = [
    "SyntheticDatasetSpec",
    "DEFAULT_SYNTHETIC_DATASETS",
    "synthetic_cache_root",
    "generate_synthetic_dataset",
    "register_synthetic_dataset",
    "register_default_synthetic_datasets",
    "ensure_dataset_files",
]

logger = logging.getLogger(__name__)

CACHE_ENV_VAR = "IOU_AWARE_DATA"
_FORMAT_VERSION = 1  # bump when the generators change, so that caches are rebuilt

_RENDERERS: Dict[str, Callable] = {"shapes": render_shapes_image, "stickmen": render_stickmen_image}


@dataclasses.dataclass(frozen=True)
class SyntheticDatasetSpec:
    """What to generate. Two equal specs always give byte-identical files."""

    kind: str  # "shapes" or "stickmen"
    num_images: int
    seed: int
    height: int = 256
    width: int = 256
    max_objects: Optional[int] = None  # None: the renderer's default

    def __post_init__(self):
        check_choice("synthetic dataset kind", self.kind, sorted(_RENDERERS))
        if self.num_images < 1 or self.height < 32 or self.width < 32:
            raise ValueError(f"synthetic dataset needs >= 1 image of >= 32x32 px, got {self}")

    def fingerprint(self) -> str:
        text = json.dumps([_FORMAT_VERSION, dataclasses.asdict(self)], sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:10]


DEFAULT_SYNTHETIC_DATASETS = {
    "shapes_train": SyntheticDatasetSpec("shapes", num_images=1000, seed=0),
    "shapes_val": SyntheticDatasetSpec("shapes", num_images=200, seed=1),
    "stickmen_train": SyntheticDatasetSpec("stickmen", num_images=800, seed=2),
    "stickmen_val": SyntheticDatasetSpec("stickmen", num_images=150, seed=3),
}


def synthetic_cache_root() -> str:
    """``$IOU_AWARE_DATA`` if set, else ``~/.cache/iou_aware/datasets``."""
    default = os.path.join(os.path.expanduser("~"), ".cache", "iou_aware", "datasets")
    return os.path.abspath(os.environ.get(CACHE_ENV_VAR, default))


def _categories(kind: str) -> List[Dict]:
    if kind == "shapes":
        return [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(SHAPE_CLASSES)]
    return [
        {
            "id": 1,
            "name": "person",
            "supercategory": "person",
            "keypoints": list(KEYPOINT_NAMES),
            "skeleton": SKELETON,
        }
    ]


def _metadata(kind: str) -> Dict:
    if kind == "shapes":
        return {"thing_classes": list(SHAPE_CLASSES)}
    return {
        "thing_classes": ["person"],
        "keypoint_names": KEYPOINT_NAMES,
        "keypoint_flip_map": KEYPOINT_FLIP_MAP,
        "keypoint_connection_rules": KEYPOINT_CONNECTION_RULES,
    }


def generate_synthetic_dataset(spec: SyntheticDatasetSpec, output_dir: str) -> None:
    """Write ``output_dir/images/*.png`` and ``output_dir/annotations.json`` (COCO format).

    Boxes are written as COCO XYWH; category ids start at 1.
    """
    render = _RENDERERS[spec.kind]
    kwargs = {} if spec.max_objects is None else {"max_objects": spec.max_objects}
    os.makedirs(os.path.join(output_dir, "images"), exist_ok=True)
    images, annotations = [], []
    for index in range(spec.num_images):
        rng = np.random.default_rng([spec.seed, index])
        image, objects = render(rng, spec.height, spec.width, **kwargs)
        file_name = f"{index:06d}.png"
        cv2.imwrite(os.path.join(output_dir, "images", file_name), image[:, :, ::-1])
        images.append({"id": index + 1, "file_name": file_name, "height": spec.height, "width": spec.width})
        for obj in objects:
            x0, y0, x1, y1 = obj["bbox"]
            annotation = dict(obj, id=len(annotations) + 1, image_id=index + 1, iscrowd=0)
            annotation["category_id"] = obj["category_id"] + 1
            annotation["bbox"] = [x0, y0, x1 - x0, y1 - y0]
            annotations.append(annotation)
    coco = {
        "info": {"description": f"iou_aware synthetic {spec.kind}", "spec": dataclasses.asdict(spec)},
        "images": images,
        "annotations": annotations,
        "categories": _categories(spec.kind),
    }
    with open(os.path.join(output_dir, "annotations.json"), "w") as f:
        json.dump(coco, f)


def _dataset_dir(name: str, spec: SyntheticDatasetSpec, root: str) -> str:
    return os.path.join(root, f"{name}-{spec.fingerprint()}")


def ensure_dataset_files(name: str, spec: SyntheticDatasetSpec, root: Optional[str] = None) -> str:
    """Generate the dataset into the cache unless it is already there; return its folder.

    Safe with several processes: each writes into its own temporary folder, and the first to
    rename it into place wins.
    """
    root = root or synthetic_cache_root()
    final_dir = _dataset_dir(name, spec, root)
    if os.path.isfile(os.path.join(final_dir, "annotations.json")):
        return final_dir
    os.makedirs(root, exist_ok=True)
    logger.info(f"Generating synthetic dataset {name} ({spec}) into {final_dir} ...")
    tmp_dir = tempfile.mkdtemp(prefix=f".{name}-", dir=root)
    try:
        generate_synthetic_dataset(spec, tmp_dir)
        try:
            os.rename(tmp_dir, final_dir)
        except OSError:
            if not os.path.isfile(os.path.join(final_dir, "annotations.json")):
                raise
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return final_dir


def register_synthetic_dataset(name: str, spec: SyntheticDatasetSpec, root: Optional[str] = None) -> None:
    """Register ``name`` in Detectron2's DatasetCatalog / MetadataCatalog, COCO-style.

    The files are generated on the first ``DatasetCatalog.get(name)`` (or ``ensure_dataset_files``).
    ``metadata.json_file`` is the COCO JSON that COCOEvaluator reads.
    """
    root = root or synthetic_cache_root()
    dataset_dir = _dataset_dir(name, spec, root)
    json_file = os.path.join(dataset_dir, "annotations.json")
    image_root = os.path.join(dataset_dir, "images")

    def load():
        ensure_dataset_files(name, spec, root)
        return load_coco_json(json_file, image_root, name, extra_annotation_keys=["id"])

    DatasetCatalog.register(name, load)
    MetadataCatalog.get(name).set(
        json_file=json_file,
        image_root=image_root,
        evaluator_type="coco",
        synthetic_spec=spec,
        synthetic_root=root,
        **_metadata(spec.kind),
    )


def register_default_synthetic_datasets(root: Optional[str] = None) -> None:
    """Register ``shapes_{train,val}`` and ``stickmen_{train,val}`` (idempotent)."""
    for name, spec in DEFAULT_SYNTHETIC_DATASETS.items():
        if name not in DatasetCatalog.list():
            register_synthetic_dataset(name, spec, root)
