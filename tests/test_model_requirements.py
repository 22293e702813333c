"""Models declare what they need (iou_aware.modeling.ModelRequirements): a model registered only
here, with its own config key, its own mapper and its own training state, trains through the
package's Trainer without a line of the engine or the data code knowing it."""

import pytest
import torch
from detectron2.config import CfgNode as CN
from detectron2.config import configurable
from detectron2.data import DatasetMapper
from detectron2.modeling import META_ARCH_REGISTRY, RetinaNet
from detectron2.structures import Instances
from torch import nn

from iou_aware.data import MAPPER_REGISTRY, DatasetCheckError
from iou_aware.engine import Trainer, build_train_mapper
from iou_aware.model_zoo import get_config
from iou_aware.modeling import GFL, LSNet, ModelRequirements, model_requirements


@MAPPER_REGISTRY.register()
class CentreMapper(DatasetMapper):
    """Detectron2's mapper plus ``gt_centres`` (G, 2): the centre of each box, scaled."""

    @configurable
    def __init__(self, is_train=True, *, centre_scale: float = 1.0, **kwargs):
        super().__init__(is_train, **kwargs)
        self.centre_scale = centre_scale

    @classmethod
    def from_config(cls, cfg, is_train=True, *, centre_scale: float = 1.0):
        return dict(super().from_config(cfg, is_train), centre_scale=centre_scale)

    def __call__(self, dataset_dict):
        dataset_dict = super().__call__(dataset_dict)
        instances = dataset_dict["instances"]
        instances.gt_centres = instances.gt_boxes.get_centers() * self.centre_scale
        return dataset_dict


@META_ARCH_REGISTRY.register()
class CentreCounter(nn.Module):
    """Predicts one number per class from the mean pixel; its loss needs the mapper's field."""

    def __init__(self, cfg):
        super().__init__()
        self.linear = nn.Linear(3, cfg.MODEL.CENTRES.NUM_CLASSES)
        self.seen_centres = 0.0  # training state outside the state_dict

    @classmethod
    def requirements(cls, cfg):
        return ModelRequirements(
            class_count_key="MODEL.CENTRES.NUM_CLASSES",
            train_mapper="CentreMapper",
            mapper_options={"centre_scale": cfg.MODEL.CENTRES.SCALE},
            training_state=("seen_centres",),
        )

    @property
    def device(self):
        return self.linear.weight.device

    def forward(self, batched_inputs):
        pixels = torch.stack([x["image"].float().mean(dim=(1, 2)) for x in batched_inputs]) / 255
        if not self.training:
            return [{"instances": Instances(x["image"].shape[-2:])} for x in batched_inputs]
        centres = [x["instances"].gt_centres for x in batched_inputs]  # AttributeError without the mapper
        self.seen_centres += float(sum(len(c) for c in centres))
        return {"loss_centres": self.linear(pixels).pow(2).mean() + 0 * sum(c.sum() for c in centres)}


def _cfg(tmp_path, num_classes=4, **overrides):
    cfg = get_config("Shapes/retinanet_slim_R_FPN.yaml")
    cfg.MODEL.CENTRES = CN({"NUM_CLASSES": num_classes, "SCALE": 2.0})
    cfg.MODEL.META_ARCHITECTURE = "CentreCounter"
    cfg.MODEL.DEVICE = "cpu"
    cfg.DATASETS.TRAIN = ("shapes_tiny_train",)
    cfg.DATASETS.TEST = ()
    cfg.SOLVER.IMS_PER_BATCH = 2
    cfg.SOLVER.MAX_ITER = 2
    cfg.SOLVER.CHECKPOINT_PERIOD = 2
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.OUTPUT_DIR = str(tmp_path)
    cfg.merge_from_list([x for kv in overrides.items() for x in kv])
    return cfg


def test_a_model_registered_outside_the_package_trains_with_its_declared_needs(tmp_path):
    cfg = _cfg(tmp_path)
    mapper = build_train_mapper(cfg)
    assert isinstance(mapper, CentreMapper) and mapper.centre_scale == 2.0
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    assert trainer.model.seen_centres > 0
    checkpoint = torch.load(tmp_path / "model_final.pth", weights_only=False)
    assert checkpoint["model_training_state"] == {"seen_centres": trainer.model.seen_centres}


def test_its_class_count_key_is_checked_against_the_dataset(tmp_path):
    with pytest.raises(DatasetCheckError, match="set MODEL.CENTRES.NUM_CLASSES 4"):
        Trainer(_cfg(tmp_path, num_classes=2))


def test_the_package_models_and_detectron2_models_declare_theirs():
    cfg = get_config("Shapes/lsnet_contour_slim_R_FPN.yaml")
    needs = model_requirements(cfg)
    assert needs.train_mapper == "LandmarkDatasetMapper"
    assert needs.mapper_options == {
        "landmark_task": "contour",
        "num_contour_points": cfg.MODEL.LSNET.NUM_CONTOUR_POINTS,
    }
    assert needs.class_count_key == "MODEL.LSNET.NUM_CLASSES" and LSNet.requirements(cfg) == needs
    assert model_requirements(get_config("Shapes/gfl_slim_R_FPN.yaml")) == GFL.requirements(None)
    iou_aware = model_requirements(get_config("Shapes/iou_aware_retinanet_slim_R_FPN.yaml"))  # inherits RetinaNet's
    assert iou_aware == ModelRequirements("MODEL.RETINANET.NUM_CLASSES", training_state=("loss_normalizer",))
    assert not hasattr(RetinaNet, "requirements")
    assert (
        model_requirements(get_config("Shapes/mask_rcnn_slim_R_FPN.yaml")).class_count_key
        == "MODEL.ROI_HEADS.NUM_CLASSES"
    )


def test_engine_and_data_code_name_no_meta_architecture(repo_root):
    """The engine and the data code know models only through ModelRequirements."""
    import pathlib

    names = [name for name in META_ARCH_REGISTRY._obj_map if name not in ("CentreCounter",)]
    package = pathlib.Path(repo_root) / "projects" / "iou_aware"
    found = []
    for folder in ("engine", "data"):
        for path in (package / folder).rglob("*.py"):
            text = path.read_text()
            found += [f"{path.name}: {name}" for name in names if f'"{name}"' in text or f"'{name}'" in text]
            found += [
                f"{path.name}: MODEL.{key}"
                for key in ("LSNET", "GFL", "IOU_AWARE", "RETINANET")
                if f"MODEL.{key}" in text
            ]
    assert found == []
