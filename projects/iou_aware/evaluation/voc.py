"""PASCAL VOC datasets (Detectron2's builtin ``voc_*`` and ``--register-voc`` folders) evaluated by
Detectron2's PascalVOCDetectionEvaluator, or COCO-style with VOC's "difficult" objects ignored."""

import json
import os
import xml.etree.ElementTree as ET
from typing import Dict, List

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import PascalVOCDetectionEvaluator
from detectron2.structures import BoxMode

from ..data.voc import check_voc_evaluation_files

__all__ = ["build_voc_evaluator", "is_voc_dataset", "prepare_voc_coco_ground_truth", "voc_coco_ground_truth"]


def is_voc_dataset(dataset_name: str) -> bool:
    """Whether ``dataset_name`` has the metadata of ``register_pascal_voc`` (dirname, split, year)."""
    metadata = MetadataCatalog.get(dataset_name)
    return all(hasattr(metadata, key) for key in ("dirname", "split", "year", "thing_classes"))


def build_voc_evaluator(dataset_name: str) -> PascalVOCDetectionEvaluator:
    """Detectron2's PascalVOCDetectionEvaluator: ``bbox`` AP50, AP75 and AP (mean over IoU
    0.5:0.95), by VOC2007's 11 recall points for year 2007, else the area under the curve;
    "difficult" objects ignored. Every annotation file it cannot read is named first
    (:func:`iou_aware.data.check_voc_evaluation_files`)."""
    if not is_voc_dataset(dataset_name):
        raise ValueError(
            f'TEST.EVALUATOR "pascal_voc" needs a dataset registered as PASCAL VOC (metadata dirname, split, '
            f'year): {dataset_name} is not one; use "auto" or "coco".'
        )
    check_voc_evaluation_files(dataset_name)
    return PascalVOCDetectionEvaluator(dataset_name)


def _difficult_flags(xml_file: str) -> List[bool]:
    """One flag per ``<object>`` of the file, in order (``load_voc_instances``' annotation order)."""
    return [obj.findtext("difficult", "0").strip() == "1" for obj in ET.parse(xml_file).getroot().findall("object")]


def voc_coco_ground_truth(dataset_name: str) -> Dict:
    """The loaded records of a VOC dataset as a COCO dict (boxes in XYWH px, ids as the records'),
    each "difficult" object a crowd region (``iscrowd`` 1): COCOeval then neither counts it as a
    miss nor a detection of it as a false positive, as the VOC protocol ignores it."""
    metadata = MetadataCatalog.get(dataset_name)
    images, annotations = [], []
    for record in DatasetCatalog.get(dataset_name):
        images.append(
            {
                "id": record["image_id"],
                "file_name": record["file_name"],
                "height": record["height"],
                "width": record["width"],
            }
        )
        difficult = _difficult_flags(os.path.join(metadata.dirname, "Annotations", f"{record['image_id']}.xml"))
        assert len(difficult) == len(record["annotations"]), record["image_id"]
        for annotation, crowd in zip(record["annotations"], difficult):
            x0, y0, x1, y1 = BoxMode.convert(list(annotation["bbox"]), annotation["bbox_mode"], BoxMode.XYXY_ABS)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": record["image_id"],
                    "category_id": annotation["category_id"],
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": max(x1 - x0, 0.0) * max(y1 - y0, 0.0),
                    "iscrowd": int(crowd),
                }
            )
    categories = [{"id": i, "name": name} for i, name in enumerate(metadata.thing_classes)]
    return {"info": {"description": f"{dataset_name}, difficult objects as crowd"}, "images": images,
            "annotations": annotations, "categories": categories}  # fmt: skip


def prepare_voc_coco_ground_truth(dataset_name: str, output_dir: str) -> None:
    """Give a VOC dataset the ``json_file`` COCOEvaluator reads (:func:`voc_coco_ground_truth`,
    written to ``output_dir/<dataset>_coco_format.json``) unless it has one; COCOEvaluator's own
    conversion would count difficult objects as ordinary ones."""
    metadata = MetadataCatalog.get(dataset_name)
    if hasattr(metadata, "json_file"):
        return
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, f"{dataset_name}_coco_format.json")
    temporary = f"{path}.{os.getpid()}.tmp"  # every process of a launch writes the same file
    with open(temporary, "w") as f:
        json.dump(voc_coco_ground_truth(dataset_name), f)
    os.replace(temporary, path)
    metadata.json_file = path
