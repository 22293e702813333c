"""Checks on annotations before they reach a model: bad boxes fail loudly, naming the annotation."""

from typing import Callable, Dict

from detectron2.structures import BoxMode

__all__ = ["InvalidAnnotationError", "check_box_annotations", "ValidatingMapper"]


class InvalidAnnotationError(ValueError):
    """An annotation that no loss can learn from (an inverted box)."""


def check_box_annotations(dataset_dict: Dict) -> None:
    """Raise InvalidAnnotationError for a box with negative width or height.

    Zero-area boxes are left to Detectron2 (``filter_empty_instances`` drops them); an inverted
    box would be dropped the same way without a word, hiding a broken annotation file.

    Args:
        dataset_dict: one record in Detectron2's dataset format.
    """
    for index, annotation in enumerate(dataset_dict.get("annotations", [])):
        x0, y0, x1, y1 = BoxMode.convert(list(annotation["bbox"]), annotation["bbox_mode"], BoxMode.XYXY_ABS)
        if x1 < x0 or y1 < y0:
            name = f"id {annotation['id']}" if "id" in annotation else f"#{index}"
            raise InvalidAnnotationError(
                f"Inverted box {list(annotation['bbox'])} ({annotation['bbox_mode'].name}) in annotation {name} "
                f"of image {dataset_dict.get('file_name', dataset_dict.get('image_id'))}: x1 < x0 or y1 < y0"
            )


class ValidatingMapper:
    """Wraps a dataset mapper (e.g. Detectron2's DatasetMapper): checks each record first."""

    def __init__(self, mapper: Callable[[Dict], Dict]):
        self.mapper = mapper

    def __call__(self, dataset_dict: Dict) -> Dict:
        check_box_annotations(dataset_dict)
        return self.mapper(dataset_dict)
