"""Detectron2's DefaultTrainer, evaluating with the COCO tasks each dataset supports."""
import os

from detectron2.data import build_detection_test_loader, build_detection_train_loader
from detectron2.engine import DefaultTrainer

from ..data import ValidatingMapper, build_annotated_test_mapper, build_train_mapper
from ..evaluation import build_coco_evaluator

__all__ = ["Trainer"]


class Trainer(DefaultTrainer):
    """DefaultTrainer whose evaluator is COCOEvaluator (bbox / segm / keypoints as available)."""

    @classmethod
    def build_train_loader(cls, cfg):
        """Detectron2's train loader with the model's mapper (:func:`iou_aware.data.build_train_mapper`);
        an inverted GT box stops training with an error naming it."""
        return build_detection_train_loader(cfg, mapper=ValidatingMapper(build_train_mapper(cfg)))

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        if cfg.MODEL.IOU_AWARE.TEST_IOU_SOURCE == "ground_truth":
            return build_detection_test_loader(cfg, dataset_name, mapper=build_annotated_test_mapper(cfg))
        return super().build_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        if output_folder is None:
            output_folder = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return build_coco_evaluator(cfg, dataset_name, output_folder)

    def train(self):
        """Train, then return the results of the final evaluation ({} without test datasets).

        DefaultTrainer.train returns them only when TEST.EXPECTED_RESULTS is set; its EvalHook
        keeps them in ``_last_eval_results`` in both Detectron2 0.6 and master.
        """
        super().train()
        return getattr(self, "_last_eval_results", {})
