"""A user's PASCAL VOC-format folder as a Detectron2 dataset: ``Annotations/<id>.xml``,
``JPEGImages/<id>.jpg`` and ``ImageSets/Main/<split>.txt`` (one image id a line).

Records come from Detectron2's own ``load_voc_instances`` (boxes shifted from VOC's 1-based pixel
indices to Detectron2's coordinates, "difficult" objects kept for training); the metadata is the
one ``register_pascal_voc`` sets (``thing_classes``, ``dirname``, ``split``, ``year``) plus
``evaluator_type`` "pascal_voc", what Detectron2's ``PascalVOCDetectionEvaluator`` reads.

When Detectron2's loader fails, the split is scanned and :class:`VOCFormatError` lists every file
it cannot read, by path (a broken XML, no ``<size>``, an object without a name or a numeric box, a
class not in the dataset's). Missing images are found by the start-up checks
(:mod:`iou_aware.data.dataset_checks`).
"""

import functools
import glob
import os
import xml.etree.ElementTree as ET
from typing import Iterable, List, Optional, Sequence

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_voc_instances

from .dataset_checks import DatasetCheckError

__all__ = [
    "USER_VOC_YEAR",
    "VOCFormatError",
    "check_voc_evaluation_files",
    "find_voc_problems",
    "load_checked_voc_instances",
    "register_voc_dataset",
    "voc_class_names",
    "voc_split_file",
    "voc_split_ids",
]

# The "year" of a user's VOC dataset for PascalVOCDetectionEvaluator: 2007 would score AP by
# VOC2007's 11 recall points; any other year by the area under the precision-recall curve.
USER_VOC_YEAR = 2012
_BOX_SIDES = ("xmin", "ymin", "xmax", "ymax")
# Fields that PascalVOCDetectionEvaluator reads from every object (its parse_rec), besides the box.
_EVALUATOR_FIELDS = ("pose", "truncated", "difficult")
_EXAMPLES = 10


class VOCFormatError(DatasetCheckError):
    """A VOC-format folder that Detectron2's loader or evaluator cannot read; the message names
    every file."""


def voc_split_file(dirname: str, split: str) -> str:
    return os.path.join(dirname, "ImageSets", "Main", split + ".txt")


def voc_split_ids(dirname: str, split: str) -> List[str]:
    """The image ids listed in ``ImageSets/Main/<split>.txt`` (blank lines skipped).

    Raises:
        VOCFormatError naming the file when it does not exist.
    """
    path = voc_split_file(dirname, split)
    if not os.path.isfile(path):
        raise VOCFormatError(f"VOC split file not found: {path} (a VOC folder has ImageSets/Main/<split>.txt)")
    with open(path) as f:
        return [line.split()[0] for line in f if line.strip()]


def voc_class_names(dirnames: Iterable[str]) -> List[str]:
    """The sorted object names of every ``Annotations/*.xml`` in ``dirnames`` (all splits, so that
    the train and test splits of one folder get the same category ids; files that do not parse
    are skipped here and reported by the loader)."""
    names = set()
    for dirname in dirnames:
        for path in glob.glob(os.path.join(dirname, "Annotations", "*.xml")):
            try:
                root = ET.parse(path).getroot()
            except ET.ParseError:
                continue
            names.update(n.strip() for n in (o.findtext("name") for o in root.iter("object")) if n and n.strip())
    return sorted(names)


def _object_problems(obj, index: int, class_names: Optional[Sequence[str]], for_evaluation: bool) -> List[str]:
    where = f"object #{index}"
    problems = []
    name = obj.findtext("name")
    if name is None:
        problems.append(f"{where} has no <name>")
    elif class_names is not None and name not in class_names:
        problems.append(f"{where} is a {name!r}, not one of the dataset's {len(class_names)} classes")
    box = obj.find("bndbox")
    if box is None:
        return problems + [f"{where} has no <bndbox>"]
    for side in _BOX_SIDES:
        text = box.findtext(side)
        try:
            int(text) if for_evaluation else float(text)
        except (TypeError, ValueError):
            kind = "an integer" if for_evaluation else "a number"
            problems.append(f"{where} has <{side}> {text!r}, not {kind}")
    if for_evaluation:
        for field in _EVALUATOR_FIELDS:
            if obj.findtext(field) is None:
                problems.append(f"{where} has no <{field}>")
    return problems


def find_voc_problems(
    dirname: str, split: str, class_names: Optional[Sequence[str]] = None, for_evaluation: bool = False
) -> List[str]:
    """Every problem of the split's annotation files, as ``"<path>: <what>"``, in split order.

    Args:
        class_names: the dataset's classes; None to accept any object name.
        for_evaluation: also what PascalVOCDetectionEvaluator needs of each object: ``<pose>``,
            ``<truncated>``, ``<difficult>`` and integer box coordinates.
    """
    ids = voc_split_ids(dirname, split)
    problems = []
    if len(ids) == 1 and not for_evaluation:
        # np.loadtxt reads a one-line file as a 0-d array, which Detectron2's loader cannot iterate.
        problems.append(f"{voc_split_file(dirname, split)}: lists one image; Detectron2's VOC loader needs two or more")
    for fileid in ids:
        path = os.path.join(dirname, "Annotations", fileid + ".xml")
        if not os.path.isfile(path):
            problems.append(f"{path}: annotation file not found")
            continue
        try:
            root = ET.parse(path).getroot()
        except ET.ParseError as e:
            problems.append(f"{path}: not valid XML ({e})")
            continue
        found = []
        if not for_evaluation:
            for side in ("width", "height"):
                text = root.findtext(f"size/{side}")
                if text is None or not text.strip().isdigit():
                    found.append(f"<size><{side}> is {text!r}, not an integer")
        for index, obj in enumerate(root.findall("object")):
            found += _object_problems(obj, index, class_names, for_evaluation)
        problems += [f"{path}: {p}" for p in found]
    return problems


def _report(dataset: str, problems: Sequence[str], purpose: str) -> str:
    more = f"\n  ... and {len(problems) - _EXAMPLES} more" if len(problems) > _EXAMPLES else ""
    return (
        f"{purpose} VOC dataset {dataset}: {len(problems)} problem{'s' if len(problems) > 1 else ''}:\n  - "
        + "\n  - ".join(problems[:_EXAMPLES])
        + more
    )


def load_checked_voc_instances(dirname: str, split: str, class_names: Sequence[str], dataset: str = "") -> List[dict]:
    """Detectron2's ``load_voc_instances``; when it fails, :class:`VOCFormatError` listing every
    problem of the split (:func:`find_voc_problems`)."""
    try:
        return load_voc_instances(dirname, split, list(class_names))
    except Exception as e:
        problems = find_voc_problems(dirname, split, class_names)
        if not problems:
            raise
        raise VOCFormatError(_report(dataset or dirname, problems, "Cannot load")) from e


def register_voc_dataset(
    name: str, dirname: str, split: str, class_names: Sequence[str], year: int = USER_VOC_YEAR
) -> None:
    """Register ``split`` of the VOC folder ``dirname`` as ``name`` (a name registered before is
    replaced): :func:`load_checked_voc_instances` and ``register_pascal_voc``'s metadata with
    ``evaluator_type`` "pascal_voc"."""
    dirname = os.path.abspath(dirname)
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    DatasetCatalog.register(
        name, functools.partial(load_checked_voc_instances, dirname, split, list(class_names), name)
    )
    MetadataCatalog.get(name).set(
        thing_classes=list(class_names), dirname=dirname, year=year, split=split, evaluator_type="pascal_voc"
    )


def check_voc_evaluation_files(dataset: str) -> None:
    """Raise :class:`VOCFormatError` naming every annotation file of ``dataset`` (registered as
    VOC: metadata ``dirname`` and ``split``) that PascalVOCDetectionEvaluator cannot read."""
    metadata = MetadataCatalog.get(dataset)
    problems = find_voc_problems(metadata.dirname, metadata.split, for_evaluation=True)
    if problems:
        raise VOCFormatError(
            _report(dataset, problems, "PascalVOCDetectionEvaluator cannot evaluate")
            + '\nFix the files, or set TEST.EVALUATOR "coco" (COCO-style AP, from the loaded records).'
        )
