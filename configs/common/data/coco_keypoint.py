"""COCO person keypoints (``keypoints_coco_2017_*``, images with at least one keypoint), as
``coco.py`` otherwise; boxes and keypoints are evaluated."""

from detectron2.config import LazyCall as L
from detectron2.data.detection_utils import create_keypoint_hflip_indices

from .coco import dataloader

dataloader.train.dataset.update(names="keypoints_coco_2017_train", min_keypoints=1)
dataloader.test.dataset.names = "keypoints_coco_2017_val"
dataloader.train.mapper.update(
    use_instance_mask=False,
    use_keypoint=True,
    keypoint_hflip_indices=L(create_keypoint_hflip_indices)(dataset_names="${...dataset.names}"),
)
dataloader.evaluator.tasks = ("bbox", "keypoints")
