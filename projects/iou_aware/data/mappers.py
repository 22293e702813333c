"""Data mappers built from Detectron2's DatasetMapper."""
import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import DatasetMapper
from detectron2.data import detection_utils as utils

from .landmarks import extreme_points

__all__ = ["build_annotated_test_mapper", "LandmarkDatasetMapper", "build_train_mapper"]


def build_annotated_test_mapper(cfg) -> DatasetMapper:
    """A test-time DatasetMapper (test resizing, no flip) that keeps the annotations as
    ``instances``, for evaluations that need the ground truth inside the model (upper bounds)."""
    return DatasetMapper(cfg, is_train=True, augmentations=utils.build_augmentation(cfg, is_train=False))


class LandmarkDatasetMapper(DatasetMapper):
    """
    Detectron2's DatasetMapper that also gives LSNet's landmark targets: ``instances.gt_landmarks``,
    a float32 tensor (G, L, 2) of absolute (x, y) pixels in the transformed image.

    Landmarks are computed from the transformed annotations, so they follow every augmentation
    (a horizontal flip swaps the leftmost and rightmost points because they are recomputed).
    Task "box": [top, left, bottom, right, centre] extreme points of the instance's polygons,
    or the border midpoints and centre of its box when it has no polygons.
    """

    @configurable
    def __init__(self, is_train: bool = True, *, landmark_task: str = "box", keep_masks: bool = False, **kwargs):
        """
        Args:
            landmark_task: a key of iou_aware.modeling.LANDMARK_TASKS.
            keep_masks: also return ``gt_masks`` (polygons are always read, for the landmarks).
            kwargs: DatasetMapper's arguments.
        """
        if landmark_task != "box":
            raise ValueError(f"LandmarkDatasetMapper: unknown landmark task {landmark_task!r}; use 'box'.")
        kwargs["use_instance_mask"] = True
        kwargs["instance_mask_format"] = "polygon"
        super().__init__(is_train, **kwargs)
        self.landmark_task = landmark_task
        self.keep_masks = keep_masks

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        ret = super().from_config(cfg, is_train)
        ret["landmark_task"] = cfg.MODEL.LSNET.TASK
        ret["keep_masks"] = cfg.MODEL.MASK_ON
        return ret

    def __call__(self, dataset_dict):
        dataset_dict = super().__call__(dataset_dict)
        instances = dataset_dict.get("instances")
        if instances is None:
            return dataset_dict
        boxes = instances.gt_boxes.tensor.numpy()
        if instances.has("gt_masks"):
            polygons = instances.gt_masks.polygons
            if not self.keep_masks:
                instances.remove("gt_masks")
        else:
            polygons = [None] * len(instances)
        landmarks = [extreme_points(p, box) for p, box in zip(polygons, boxes)]
        instances.gt_landmarks = torch.as_tensor(np.asarray(landmarks, dtype=np.float32).reshape(-1, 5, 2))
        return dataset_dict


def build_train_mapper(cfg) -> DatasetMapper:
    """The training mapper of a config's model: LandmarkDatasetMapper for LSNet, else DatasetMapper."""
    if cfg.MODEL.META_ARCHITECTURE == "LSNet":
        return LandmarkDatasetMapper(cfg, is_train=True)
    return DatasetMapper(cfg, is_train=True)
