"""Start-up checks of a training set against the model: every problem found at once, before the
model is built or an iteration runs, instead of one crash per run when a loader reaches a bad record.

Checked, without decoding any image (file existence only):

* the datasets' category count against the model's class count (the config key the model
  declares, :class:`iou_aware.modeling.ModelRequirements`);
* the keypoint count against ``MODEL.ROI_KEYPOINT_HEAD.NUM_KEYPOINTS`` when ``MODEL.KEYPOINT_ON``;
* per record: a missing image file; per annotation: an inverted box, a box outside the image by
  more than 1 px, no mask when the model needs masks (``MODEL.MASK_ON``).

The counts are model-level problems and always stop training. The per-record problems stop it too,
unless ``DATALOADER.FILTER_INVALID_ANNOTATIONS`` is True: then the bad annotations and the records
whose image is missing are dropped, and the counts logged.
"""

import logging
import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from detectron2.data import MetadataCatalog
from detectron2.structures import BoxMode

__all__ = ["DatasetProblem", "DatasetCheckError", "find_record_problems", "check_training_records"]

# Problem kind -> how the report words it.
PROBLEM_KINDS = OrderedDict(
    missing_image="image file not found",
    inverted_box="inverted box (x1 < x0 or y1 < y0)",
    box_outside_image="box outside the image by more than 1 px",
    missing_mask="annotation without a mask (polygon or RLE), and the model needs masks",
)
_OUTSIDE_TOLERANCE_PX = 1.0
_EXAMPLES = 5


class DatasetCheckError(ValueError):
    """The training data does not fit the model, or has broken records; the message lists all."""


@dataclass(frozen=True)
class DatasetProblem:
    kind: str  # a key of PROBLEM_KINDS
    image: str  # file name (or image id) of the record
    annotation: Optional[object]  # annotation id (or "#index"), None for record-level problems
    detail: str = ""


def find_record_problems(records: Sequence[Dict], needs_masks: bool = False) -> List[DatasetProblem]:
    """Problems of each record and annotation (Detectron2's dataset format), in record order.

    Crowd annotations are not checked (Detectron2's mappers drop them).
    """
    problems = []
    for record in records:
        image = str(record.get("file_name", record.get("image_id")))
        if "file_name" in record and not os.path.isfile(record["file_name"]):
            problems.append(DatasetProblem("missing_image", image, None))
        height, width = record.get("height"), record.get("width")
        for index, annotation in enumerate(record.get("annotations", [])):
            if annotation.get("iscrowd", 0):
                continue
            name = annotation.get("id", f"#{index}")
            x0, y0, x1, y1 = _xyxy(annotation["bbox"], annotation["bbox_mode"])
            if x1 < x0 or y1 < y0:
                problems.append(DatasetProblem("inverted_box", image, name, _box_words(annotation)))
            elif (
                width is not None
                and height is not None
                and (
                    min(x0, y0) < -_OUTSIDE_TOLERANCE_PX
                    or x1 > width + _OUTSIDE_TOLERANCE_PX
                    or y1 > height + _OUTSIDE_TOLERANCE_PX
                )
            ):
                words = f"{_box_words(annotation)} in a {width}x{height} image"
                problems.append(DatasetProblem("box_outside_image", image, name, words))
            if needs_masks and not annotation.get("segmentation"):
                problems.append(DatasetProblem("missing_mask", image, name))
    return problems


def _box_words(annotation) -> str:
    return f"box {[round(float(v), 2) for v in annotation['bbox']]} ({annotation['bbox_mode'].name})"


def _xyxy(box, mode) -> Tuple[float, float, float, float]:
    """XYXY of a box; the two COCO modes by hand (BoxMode.convert costs ~50 us a box)."""
    if mode == BoxMode.XYWH_ABS:
        x, y, w, h = box
        return x, y, x + w, y + h
    if mode == BoxMode.XYXY_ABS:
        return tuple(box)
    return tuple(BoxMode.convert(list(box), mode, BoxMode.XYXY_ABS))


def _count_problems(
    cfg, dataset_names: Sequence[str], records: Sequence[Dict], classes: Optional[Tuple[str, int]]
) -> List[str]:
    errors = []
    if classes is not None:
        for name in dataset_names:
            thing_classes = MetadataCatalog.get(name).get("thing_classes", None)
            if thing_classes is not None and len(thing_classes) > classes[1]:
                errors.append(
                    f"dataset {name} has {len(thing_classes)} categories but the model has {classes[0]} = {classes[1]}: "
                    f"set {classes[0]} {len(thing_classes)}"
                )
    if cfg.MODEL.KEYPOINT_ON:
        expected = cfg.MODEL.ROI_KEYPOINT_HEAD.NUM_KEYPOINTS
        counts = {len(a["keypoints"]) // 3 for r in records for a in r.get("annotations", []) if a.get("keypoints")}
        for name in dataset_names:
            keypoint_names = MetadataCatalog.get(name).get("keypoint_names", None)
            if keypoint_names is not None:
                counts.add(len(keypoint_names))
        wrong = sorted(counts - {expected})
        if wrong:
            errors.append(
                f"the training data has {wrong} keypoints per instance but MODEL.ROI_KEYPOINT_HEAD.NUM_KEYPOINTS = "
                f"{expected}: set it to the dataset's count"
            )
    return errors


def _report(problems: List[DatasetProblem]) -> List[str]:
    lines = []
    for kind, words in PROBLEM_KINDS.items():
        found = [p for p in problems if p.kind == kind]
        if not found:
            continue
        examples = "; ".join(
            f"image {p.image}"
            + (f", annotation {p.annotation}" if p.annotation is not None else "")
            + (f": {p.detail}" if p.detail else "")
            for p in found[:_EXAMPLES]
        )
        lines.append(f"{len(found)} x {words}, e.g. {examples}")
    return lines


def check_training_records(
    cfg, dataset_names: Sequence[str], records: List[Dict], class_count: Optional[Tuple[str, int]] = None
) -> List[Dict]:
    """Check ``records`` (the training set of ``cfg``, Detectron2's format) against the model.

    Args:
        class_count: (config key, value) of the model's foreground class count, None to skip
            that check.

    Returns:
        the records, or with ``DATALOADER.FILTER_INVALID_ANNOTATIONS`` the records without their
        bad annotations and without the records whose image is missing.
    Raises:
        DatasetCheckError listing every problem (counts and the first few of each kind).
    """
    logger = logging.getLogger(__name__)
    errors = _count_problems(cfg, dataset_names, records, class_count)
    problems = find_record_problems(records, needs_masks=cfg.MODEL.MASK_ON)
    filtering = cfg.DATALOADER.FILTER_INVALID_ANNOTATIONS
    if errors or (problems and not filtering):
        lines = errors + _report(problems)
        hint = (
            ""
            if not problems
            else (
                "\nFix the annotation file, or set DATALOADER.FILTER_INVALID_ANNOTATIONS True to drop the bad annotations "
                "and the images whose file is missing."
            )
        )
        raise DatasetCheckError(
            f"The training data {list(dataset_names)} does not fit the model ({len(lines)} problem{'s' if len(lines) > 1 else ''}):\n  - "
            + "\n  - ".join(lines)
            + hint
        )
    if not problems:
        return records
    missing = {p.image for p in problems if p.kind == "missing_image"}
    bad = {(p.image, p.annotation) for p in problems if p.annotation is not None}
    kept = []
    for record in records:
        image = str(record.get("file_name", record.get("image_id")))
        if image in missing:
            continue
        annotations = [
            a for i, a in enumerate(record.get("annotations", [])) if (image, a.get("id", f"#{i}")) not in bad
        ]
        kept.append(dict(record, annotations=annotations))
    logger.warning(
        "DATALOADER.FILTER_INVALID_ANNOTATIONS: dropped %d of %d images (missing files) and %d annotations:\n  - %s",
        len(missing),
        len(records),
        len(bad),
        "\n  - ".join(_report(problems)),
    )
    return kept
