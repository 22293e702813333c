"""Detectron2's DefaultTrainer, evaluating each dataset with the evaluator its metadata names (COCO
tasks as the dataset supports them, or PASCAL VOC), and resuming exactly where a killed run stopped."""

import os
import weakref
from typing import Dict, List, Optional, Tuple

from detectron2.data import DatasetMapper, build_detection_train_loader, get_detection_dataset_dicts
from detectron2.engine import DefaultTrainer

from ..data import ValidatingMapper, build_mapper, check_training_records
from ..evaluation import build_evaluator
from ..modeling import config_value, model_requirements
from ..utils.detectron2_compat import inner_trainer, last_eval_results, replace_train_loader
from .optimizer import build_optimizer
from .resume import AtomicDetectionCheckpointer, RandomState, ResumableTrainingSampler

__all__ = ["Trainer", "build_train_mapper"]


def build_train_mapper(cfg) -> DatasetMapper:
    """The training mapper the config's model declares (:func:`iou_aware.modeling.model_requirements`),
    from :data:`iou_aware.data.MAPPER_REGISTRY`."""
    needs = model_requirements(cfg)
    return build_mapper(cfg, needs.train_mapper, True, **needs.mapper_options)


class Trainer(DefaultTrainer):
    """DefaultTrainer whose evaluator is :func:`iou_aware.evaluation.build_evaluator`'s:
    COCOEvaluator (bbox / segm / keypoints as available) or, for a PASCAL VOC dataset,
    PascalVOCDetectionEvaluator (``TEST.EVALUATOR``)."""

    def __init__(self, cfg):
        # Before the model is built: every problem of the training data at once (iou_aware.data.dataset_checks).
        self._train_records = self.checked_training_records(cfg)
        super().__init__(cfg)
        self._sampler_seed = getattr(inner_trainer(self).data_loader, "sampler_seed", None)

    @staticmethod
    def checked_training_records(cfg) -> List[Dict]:
        """The training records of ``cfg`` (as Detectron2's train loader loads them), checked
        against the model by :func:`iou_aware.data.check_training_records` (the class count
        under the key the model declares)."""
        records = get_detection_dataset_dicts(
            cfg.DATASETS.TRAIN,
            filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS,
            min_keypoints=cfg.MODEL.ROI_KEYPOINT_HEAD.MIN_KEYPOINTS_PER_IMAGE if cfg.MODEL.KEYPOINT_ON else 0,
            proposal_files=cfg.DATASETS.PROPOSAL_FILES_TRAIN if cfg.MODEL.LOAD_PROPOSALS else None,
        )
        key = model_requirements(cfg).class_count_key
        class_count = None if key is None else (key, int(config_value(cfg, key)))
        records = check_training_records(cfg, cfg.DATASETS.TRAIN, records, class_count)
        if cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS:  # images left without annotations by the filter
            records = [r for r in records if r.get("annotations")]
        return records

    def build_train_loader(self, cfg, start: int = 0, sampler_seed: Optional[int] = None):
        """Detectron2's train loader on the checked training records, with the model's mapper
        (:func:`build_train_mapper`); an inverted GT box stops training with an
        error naming it.

        With DATALOADER.SAMPLER_TRAIN "TrainingSampler" (the default) the sampler is a
        :class:`ResumableTrainingSampler` starting at image ``start`` of the stream of
        ``sampler_seed`` (None: a seed shared by all workers, as Detectron2 draws it); the loader
        carries that seed as ``sampler_seed``.
        """
        sampler, seed = None, None
        if cfg.DATALOADER.SAMPLER_TRAIN == "TrainingSampler":
            sampler = ResumableTrainingSampler(len(self._train_records), seed=sampler_seed, start=start)
            seed = sampler.seed
        loader = build_detection_train_loader(
            cfg, mapper=ValidatingMapper(build_train_mapper(cfg)), dataset=self._train_records, sampler=sampler
        )
        loader.sampler_seed = seed
        return loader

    def build_hooks(self):
        # Detectron2's hooks save through self.checkpointer: make it atomic and add the state a
        # resumed run needs (random state, data stream).
        self.checkpointer = AtomicDetectionCheckpointer(
            self.checkpointer.model,
            self.cfg.OUTPUT_DIR,
            trainer=weakref.proxy(self),
            random_state=RandomState(),
            data_stream=_DataStreamState(weakref.proxy(self)),
            model_training_state=_ModelTrainingState(
                self.checkpointer.model, model_requirements(self.cfg).training_state
            ),
        )
        return super().build_hooks()

    def state_dict(self):
        # Detectron2 0.6's DefaultTrainer checkpoints only the iteration and the hooks: without the
        # optimizer state (momentum), a resumed run diverges. Later versions add it as "_trainer".
        state = super().state_dict()
        state.setdefault("_trainer", inner_trainer(self).state_dict())
        return state

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        runner = inner_trainer(self)
        if "_trainer" in state_dict and "optimizer" in state_dict["_trainer"]:
            runner.optimizer.load_state_dict(state_dict["_trainer"]["optimizer"])
            if "grad_scaler" in state_dict["_trainer"] and hasattr(runner, "grad_scaler"):
                runner.grad_scaler.load_state_dict(state_dict["_trainer"]["grad_scaler"])

    def resume_or_load(self, resume=True):
        """Detectron2's resume (model, optimizer, scheduler, iteration), plus the random state and
        the data stream: a resumed run sees the images the killed run would have seen next. Exact
        (same final weights) with DATALOADER.NUM_WORKERS 0 and one aspect-ratio group; with
        workers, the same images but other random augmentations."""
        super().resume_or_load(resume=resume)
        if self.start_iter > 0 and self._sampler_seed is not None:
            random_state = RandomState().state_dict()  # restored by the checkpoint; keep it exact
            loader = self.build_train_loader(
                self.cfg, start=self.start_iter * self.cfg.SOLVER.IMS_PER_BATCH, sampler_seed=self._sampler_seed
            )
            replace_train_loader(self, loader)
            RandomState().load_state_dict(random_state)

    @classmethod
    def build_optimizer(cls, cfg, model):
        """Detectron2's optimizer; ``SOLVER.CLIP_GRADIENTS.CLIP_TYPE: "full_model"`` clips the norm
        of all gradients together (:func:`iou_aware.engine.optimizer.build_optimizer`)."""
        return build_optimizer(cfg, model)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        if output_folder is None:
            output_folder = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return build_evaluator(cfg, dataset_name, output_folder)

    def train(self):
        """Train, then return the results of the final evaluation ({} without test datasets).

        DefaultTrainer.train returns them only when TEST.EXPECTED_RESULTS is set
        (:func:`iou_aware.utils.detectron2_compat.last_eval_results`).
        """
        super().train()
        return last_eval_results(self)


class _DataStreamState:
    """Checkpointable seed of the training sampler, so that a resumed run replays the same stream."""

    def __init__(self, trainer: Trainer):
        self.trainer = trainer

    def state_dict(self) -> Dict:
        return {"sampler_seed": self.trainer._sampler_seed}

    def load_state_dict(self, state: Dict) -> None:
        self.trainer._sampler_seed = state["sampler_seed"]


class _ModelTrainingState:
    """Checkpointable training state that a model keeps outside its state_dict, as the model
    declares it (``ModelRequirements.training_state``; e.g. RetinaNet's moving average of the
    number of positive anchors, ``loss_normalizer``)."""

    def __init__(self, model, attributes: Tuple[str, ...]):
        self.model = model
        self.attributes = tuple(attributes)

    def state_dict(self) -> Dict:
        return {name: float(getattr(self.model, name)) for name in self.attributes if hasattr(self.model, name)}

    def load_state_dict(self, state: Dict) -> None:
        for name, value in state.items():
            setattr(self.model, name, value)
