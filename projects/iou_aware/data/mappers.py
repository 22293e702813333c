"""Data mappers built from Detectron2's DatasetMapper, registered by name in
:data:`MAPPER_REGISTRY` so that a model can say which one it trains with
(:class:`iou_aware.modeling.ModelRequirements`) without the data code knowing the model."""

from detectron2.config import configurable
from detectron2.data import DatasetMapper
from detectron2.data import detection_utils as utils
from detectron2.structures import BoxMode
from detectron2.utils.registry import Registry

from ..structures import TASK_LANDMARK_SETS, add_landmark_targets
from ..utils import check_choice

__all__ = ["MAPPER_REGISTRY", "build_mapper", "build_annotated_test_mapper", "LandmarkDatasetMapper"]

MAPPER_REGISTRY = Registry("MAPPER")
MAPPER_REGISTRY.__doc__ = """
Dataset mappers by name, each called as ``mapper(cfg, is_train, **options)`` (``@configurable``):
Detectron2's ``DatasetMapper`` and this package's :class:`LandmarkDatasetMapper`.
"""
MAPPER_REGISTRY.register(DatasetMapper)


def build_mapper(cfg, name: str, is_train: bool = True, **options) -> DatasetMapper:
    """The mapper registered as ``name`` in :data:`MAPPER_REGISTRY`, built from ``cfg``;
    ``options`` are the extra arguments of its ``from_config`` (e.g. ``landmark_task``)."""
    return MAPPER_REGISTRY.get(name)(cfg, is_train, **options)


def build_annotated_test_mapper(cfg) -> DatasetMapper:
    """A test-time DatasetMapper (test resizing, no flip) that keeps the annotations as
    ``instances``, for evaluations that need the ground truth inside the model (upper bounds)."""
    return DatasetMapper(cfg, is_train=True, augmentations=utils.build_augmentation(cfg, is_train=False))


@MAPPER_REGISTRY.register()
class LandmarkDatasetMapper(DatasetMapper):
    """
    Detectron2's DatasetMapper that also gives LSNet's landmark targets, in absolute (x, y) pixels of
    the transformed image, for each landmark set of the task (``landmark_task``, as the model declares it):

    * ``gt_box_landmarks`` (G, 5, 2): [top, left, bottom, right, centre]. Task "box": the extreme
      points of the instance's polygons put on its box (:func:`extreme_points`: the box of the
      landmarks is the annotation box), or the box's border midpoints and centre when it has no
      polygons; task "keypoint" (the box set beside the keypoints, as the reference): the border
      midpoints and centre of the box.
    * ``gt_contour_landmarks`` (G, C + 1, 2): C = ``num_contour_points`` contour points
      (:func:`contour_landmarks`) + centre.
    * ``gt_keypoint_landmarks`` (G, K + 1, 2): the dataset's K keypoints + the box centre, and
      ``gt_keypoint_visible`` (G, K + 1) bool (COCO visibility > 0; the centre always visible).

    Landmarks are computed from the transformed annotations, so they follow every augmentation:
    a horizontal flip gives mirrored extreme points and contours that keep their orientation and
    start point; keypoints are swapped by the dataset's flip map (Detectron2's
    ``keypoint_hflip_indices``). Masks are read for the landmarks only (``gt_masks`` is dropped), in
    any format Detectron2's R-CNNs accept: polygons, and COCO RLE (an image with an RLE mask is read
    as bitmasks by Detectron2, and each mask's outline is traced with :func:`mask_to_polygons`: the
    outer boundaries of its components, vertices at pixel centres). For the box task an annotation
    without a mask gets its box's border midpoints; the contour task needs a mask on every one.
    """

    @configurable
    def __init__(self, is_train: bool = True, *, landmark_task: str = "box", num_contour_points: int = 36, **kwargs):
        """
        Args:
            landmark_task: a key of :data:`iou_aware.structures.TASK_LANDMARK_SETS`.
            num_contour_points: contour points of the contour task.
            kwargs: DatasetMapper's arguments; "keypoint" needs ``use_keypoint=True``.
        """
        check_choice("LandmarkDatasetMapper landmark_task", landmark_task, sorted(TASK_LANDMARK_SETS))
        if landmark_task == "keypoint" and not kwargs.get("use_keypoint"):
            raise ValueError("LandmarkDatasetMapper: task 'keypoint' needs keypoints (MODEL.KEYPOINT_ON True).")
        kwargs["use_instance_mask"] = landmark_task != "keypoint"
        kwargs["instance_mask_format"] = "polygon"
        super().__init__(is_train, **kwargs)
        self.landmark_sets = TASK_LANDMARK_SETS[landmark_task]
        self.box_from_polygons = landmark_task == "box"
        self.num_contour_points = num_contour_points

    @classmethod
    def from_config(cls, cfg, is_train: bool = True, *, landmark_task: str = "box", num_contour_points: int = 36):
        """DatasetMapper's arguments from ``cfg``; the landmark arguments come from the model
        (``LSNet.requirements``), not from the config."""
        ret = super().from_config(cfg, is_train)
        ret["landmark_task"] = landmark_task
        ret["num_contour_points"] = num_contour_points
        return ret

    def __call__(self, dataset_dict):
        image_name = dataset_dict.get("file_name", dataset_dict.get("image_id"))
        if self.use_instance_mask:
            dataset_dict = self._with_a_mask_on_every_annotation(dataset_dict, image_name)
            # Detectron2 reads polygons as PolygonMasks and needs "bitmask" for RLE.
            segmentations = [a.get("segmentation") for a in dataset_dict.get("annotations", [])]
            self.instance_mask_format = "polygon" if all(isinstance(x, list) for x in segmentations) else "bitmask"
        dataset_dict = super().__call__(dataset_dict)
        instances = dataset_dict.get("instances")
        if instances is None:
            return dataset_dict
        add_landmark_targets(instances, self.landmark_sets, self.num_contour_points)
        if instances.has("gt_masks"):
            instances.remove("gt_masks")
        return dataset_dict

    def _with_a_mask_on_every_annotation(self, dataset_dict, image_name):
        """Box task: an annotation without a mask gets the polygon of its box, whose extreme
        points are the box's border midpoints (Detectron2 needs all or none with masks). The
        contour task names the annotations without one."""
        annotations = dataset_dict.get("annotations", [])
        missing = [i for i, a in enumerate(annotations) if not a.get("segmentation") and not a.get("iscrowd", 0)]
        if not missing or len(missing) == len(annotations) and self.box_from_polygons:
            if missing:  # no masks at all: Detectron2 reads none, the border midpoints are used
                dataset_dict = dict(
                    dataset_dict, annotations=[{k: v for k, v in a.items() if k != "segmentation"} for a in annotations]
                )
            return dataset_dict
        if not self.box_from_polygons:
            ids = [annotations[i].get("id", f"#{i}") for i in missing]
            raise ValueError(
                f"LSNet's contour task needs a mask (polygon or RLE) on every annotation; image {image_name} has "
                f"{len(missing)} without one (annotation ids {ids[:5]})."
            )
        annotations = [dict(a) for a in annotations]
        for i in missing:
            x0, y0, x1, y1 = BoxMode.convert(annotations[i]["bbox"], annotations[i]["bbox_mode"], BoxMode.XYXY_ABS)
            annotations[i]["segmentation"] = [[x0, y0, x1, y0, x1, y1, x0, y1]]
        return dict(dataset_dict, annotations=annotations)
