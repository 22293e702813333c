"""Every COCO model's LazyConfig (configs/COCO-*/*.py) builds the model its yaml config builds, with
the same module settings, optimizer, schedule, data and training options; each trains a step; and
train_net.py trains and evaluates a LazyConfig."""

import ast
import functools
import glob
import json
import math
import os
import shutil
import types

import numpy as np
import pytest
import torch
from detectron2.config import LazyConfig, instantiate
from detectron2.data import DatasetMapper
from detectron2.engine import default_argument_parser
from detectron2.modeling import build_model
from detectron2.solver import LRMultiplier, build_lr_scheduler
from detectron2.structures import Boxes, Instances, Keypoints, PolygonMasks
from detectron2.utils.events import EventStorage
from omegaconf import DictConfig, ListConfig
from torch import nn

import train_net
from iou_aware import model_zoo
from iou_aware.engine import build_optimizer as build_yacs_optimizer
from iou_aware.engine import build_train_mapper, lazy
from iou_aware.engine.optimizer import FULL_MODEL_CLIP_TYPE
from iou_aware.evaluation import coco_tasks_for

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAZY_CONFIGS = [p for p in model_zoo.list_configs(lazy=True) if p.startswith("COCO-")]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The steps here are many small ops: on 2 shared cores, two OpenMP threads mostly wait on each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _yacs_config(lazy_path):
    cfg = model_zoo.get_config(lazy_path[: -len(".py")] + ".yaml")
    cfg.MODEL.DEVICE = "cpu"
    return cfg


@pytest.fixture(scope="module", params=LAZY_CONFIGS)
def models(request):
    """(yacs config, its model, LazyConfig, its model), built independently."""
    yacs_cfg = _yacs_config(request.param)
    lazy_cfg = model_zoo.get_config(request.param)
    return yacs_cfg, build_model(yacs_cfg), lazy_cfg, instantiate(lazy_cfg.model)


def _plain(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (ListConfig, list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (DictConfig, dict)):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _differences(a, b, path, depth=0):
    """Where two configured objects differ: numbers, strings, containers, tensors (exactly) and,
    recursively, the public attributes of other objects; submodules are compared by type only
    (each has its own entry in ``named_modules``)."""
    a, b = _plain(a), _plain(b)
    if isinstance(a, nn.Module) or isinstance(b, nn.Module):
        return [] if type(a) is type(b) else [f"{path}: {type(a).__name__} vs {type(b).__name__}"]
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        same = isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
        return [] if same else [f"{path}: tensors differ"]
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool) and not isinstance(b, bool):
        return [] if math.isclose(a, b, rel_tol=1e-12, abs_tol=0.0) else [f"{path}: {a!r} vs {b!r}"]
    if type(a) is not type(b):
        return [f"{path}: {a!r} vs {b!r}"]
    if isinstance(a, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} vs {len(b)} items"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _differences(x, y, f"{path}[{i}]", depth + 1)]
    if isinstance(a, dict):
        if set(a) != set(b):
            return [f"{path}: keys {sorted(a)} vs {sorted(b)}"]
        return [d for k in a for d in _differences(a[k], b[k], f"{path}.{k}", depth + 1)]
    if hasattr(a, "__dict__") and not isinstance(a, _CODE_TYPES):
        return _differences(_public(a), _public(b), path, depth + 1) if depth < 8 else []
    return [] if a == b else [f"{path}: {a!r} vs {b!r}"]


# Compared by equality, not by their attributes.
_CODE_TYPES = (type, types.FunctionType, types.BuiltinFunctionType, types.MethodType, functools.partial)


def _public(obj):
    return {k: v for k, v in vars(obj).items() if not k.startswith("_")}


def test_every_coco_yaml_config_has_a_lazy_config():
    yaml_models = {p[: -len(".yaml")] for p in model_zoo.list_configs() if p.startswith("COCO-")}
    assert {p[: -len(".py")] for p in LAZY_CONFIGS} == yaml_models and len(yaml_models) >= 11
    assert all(p.endswith(".yaml") for p in model_zoo.list_configs())  # the default listing is unchanged


def test_lazy_model_has_the_parameters_and_buffers_of_the_yacs_model(models):
    _, yacs_model, _, lazy_model = models
    assert type(lazy_model) is type(yacs_model)
    expected = {n: (tuple(p.shape), p.requires_grad) for n, p in yacs_model.named_parameters()}
    assert {n: (tuple(p.shape), p.requires_grad) for n, p in lazy_model.named_parameters()} == expected
    # Buffers are not random: pixel mean / std, frozen norms, anchors.
    lazy_buffers = dict(lazy_model.named_buffers())
    assert set(lazy_buffers) == {n for n, _ in yacs_model.named_buffers()}
    for name, buffer in yacs_model.named_buffers():
        assert lazy_buffers[name].shape == buffer.shape and torch.equal(lazy_buffers[name], buffer), name


def test_lazy_model_has_the_settings_of_the_yacs_model(models):
    """Every module's public attributes (loss types and weights, thresholds, matchers, assigners,
    anchor generators, input format...) are those the yaml gives."""
    _, yacs_model, _, lazy_model = models
    lazy_modules = dict(lazy_model.named_modules())
    assert set(lazy_modules) == {n for n, _ in yacs_model.named_modules()}
    differences = []
    for name, module in yacs_model.named_modules():
        differences += _differences(_public(module), _public(lazy_modules[name]), name or "model")
    assert differences == []


def test_lazy_optimizer_and_schedule_are_those_of_the_yaml(models):
    """Same weights and gradients: one step of each optimizer (rates, weight decay, bias factors,
    full-model gradient clipping) gives the same weights; the learning rates agree along the schedule."""
    yacs_cfg, yacs_model, lazy_cfg, lazy_model = models
    lazy_model.load_state_dict(yacs_model.state_dict())
    yacs_optimizer = build_yacs_optimizer(yacs_cfg, yacs_model)
    lazy_optimizer = lazy.build_optimizer(lazy_cfg, lazy_model)
    generator = torch.Generator().manual_seed(0)
    lazy_parameters = dict(lazy_model.named_parameters())
    for name, parameter in yacs_model.named_parameters():
        if parameter.requires_grad:  # large enough for the clipping at 35 to act
            parameter.grad = torch.randn(parameter.shape, generator=generator)
            lazy_parameters[name].grad = parameter.grad.clone()
    yacs_optimizer.step()
    lazy_optimizer.step()
    for name, parameter in yacs_model.named_parameters():
        torch.testing.assert_close(lazy_parameters[name], parameter, rtol=0, atol=1e-7, msg=name)

    yacs_schedule = build_lr_scheduler(yacs_cfg, yacs_optimizer)
    lazy_schedule = LRMultiplier(lazy_optimizer, instantiate(lazy_cfg.lr_multiplier), lazy_cfg.train.max_iter)
    solver = yacs_cfg.SOLVER
    for iteration in sorted({0, 1, solver.WARMUP_ITERS // 2, solver.WARMUP_ITERS, *solver.STEPS, solver.MAX_ITER - 1}):
        yacs_schedule.last_epoch = lazy_schedule.last_epoch = iteration
        assert lazy_schedule.get_lr() == pytest.approx(yacs_schedule.get_lr(), rel=1e-9), iteration


def test_lazy_data_and_training_options_are_those_of_the_yaml(models):
    yacs_cfg, _, cfg, _ = models
    data = cfg.dataloader
    assert _differences(vars(build_train_mapper(yacs_cfg)), vars(instantiate(data.train.mapper)), "train mapper") == []
    # A test mapper drops the annotations: only its input handling matters.
    test_mappers = [DatasetMapper(yacs_cfg, False), instantiate(data.test.mapper)]
    test_mappers = [{k: getattr(m, k) for k in ("is_train", "augmentations", "image_format")} for m in test_mappers]
    assert _differences(*test_mappers, "test mapper") == []
    train_set, test_set = data.train.dataset, data.test.dataset
    assert [train_set.names] == list(yacs_cfg.DATASETS.TRAIN) and [test_set.names] == list(yacs_cfg.DATASETS.TEST)
    assert train_set.get("filter_empty", True) == yacs_cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS
    min_keypoints = yacs_cfg.MODEL.ROI_KEYPOINT_HEAD.MIN_KEYPOINTS_PER_IMAGE if yacs_cfg.MODEL.KEYPOINT_ON else 0
    assert train_set.get("min_keypoints", 0) == min_keypoints and not test_set.get("filter_empty", True)
    assert (data.train.total_batch_size, data.train.num_workers, data.train.aspect_ratio_grouping) == (
        yacs_cfg.SOLVER.IMS_PER_BATCH, yacs_cfg.DATALOADER.NUM_WORKERS, yacs_cfg.DATALOADER.ASPECT_RATIO_GROUPING,
    )  # fmt: skip
    assert data.evaluator.dataset_name == yacs_cfg.DATASETS.TEST[0]
    assert tuple(data.evaluator.tasks) == coco_tasks_for(yacs_cfg, yacs_cfg.DATASETS.TEST[0])

    train = cfg.train
    assert (train.max_iter, train.init_checkpoint, train.output_dir) == (
        yacs_cfg.SOLVER.MAX_ITER, yacs_cfg.MODEL.WEIGHTS, yacs_cfg.OUTPUT_DIR,
    )  # fmt: skip
    assert (train.checkpointer.period, train.eval_period, train.seed, train.amp.enabled) == (
        yacs_cfg.SOLVER.CHECKPOINT_PERIOD, yacs_cfg.TEST.EVAL_PERIOD, yacs_cfg.SEED, yacs_cfg.SOLVER.AMP.ENABLED,
    )  # fmt: skip
    clip = yacs_cfg.SOLVER.CLIP_GRADIENTS
    assert not clip.ENABLED or clip.CLIP_TYPE == FULL_MODEL_CLIP_TYPE  # the only clipping LazyConfigs express
    assert train.clip_grad.enabled == clip.ENABLED
    if clip.ENABLED:
        assert (train.clip_grad.max_norm, train.clip_grad.norm_type) == (clip.CLIP_VALUE, clip.NORM_TYPE)


def _training_inputs(size=64):
    """Two images with one object: a box, its polygon and 17 keypoints (each model reads its own)."""
    generator = torch.Generator().manual_seed(0)
    keypoints = torch.stack([torch.linspace(10, 46, 17), torch.linspace(14, 54, 17), torch.full((17,), 2.0)], dim=1)
    inputs = []
    for _ in range(2):
        instances = Instances((size, size))
        instances.gt_boxes = Boxes(torch.tensor([[8.0, 12.0, 48.0, 56.0]]))
        instances.gt_classes = torch.tensor([0])
        instances.gt_masks = PolygonMasks([[[8.0, 12.0, 48.0, 12.0, 48.0, 56.0, 8.0, 56.0]]])
        instances.gt_keypoints = Keypoints(keypoints[None])
        image = torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=generator)
        inputs.append({"image": image, "instances": instances, "height": size, "width": size})
    return inputs


def test_lazy_model_trains_one_step(models):
    _, _, cfg, model = models
    model.train()
    optimizer = lazy.build_optimizer(cfg, model)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    with EventStorage(0):
        losses = model(_training_inputs())
    assert losses and all(torch.isfinite(v) for v in losses.values()), losses
    optimizer.zero_grad()
    sum(losses.values()).backward()
    optimizer.step()
    changed = [n for n, p in model.named_parameters() if p.requires_grad and not torch.equal(p, before[n])]
    assert len(changed) > len(before) // 2
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_get_config_loads_a_lazy_config_with_or_without_the_prefix():
    for path in ("COCO-Detection/gfl_R_50_FPN_1x.py", "iou_aware://COCO-Detection/gfl_R_50_FPN_1x.py"):
        cfg = model_zoo.get_config(path)
        assert set(cfg) == {"model", "dataloader", "optimizer", "lr_multiplier", "train"}
        assert cfg.model._target_.__name__ == "GFL" and cfg.train.max_iter == 90000
    with pytest.raises(RuntimeError, match="COCO-Detection/nope.py is not a config of iou_aware.*gfl_R_50_FPN_1x.py"):
        model_zoo.get_config("COCO-Detection/nope.py")


def test_lazy_configs_load_from_a_copy_of_the_configs_folder(tmp_path):
    """As from an installed package: the relative imports between config files find common/ beside them."""
    copy = tmp_path / "iou_aware" / "model_zoo" / "configs"
    shutil.copytree(f"{REPO_ROOT}/configs", copy)
    cfg = LazyConfig.load(str(copy / "COCO-Keypoints" / "lsnet_R_50_FPN_1x.py"))
    assert cfg.model.head.task == "keypoint" and cfg.dataloader.train.dataset.names == "keypoints_coco_2017_train"


def test_the_package_data_ships_every_config_file():
    tree = ast.parse(open(f"{REPO_ROOT}/setup.py").read())
    (patterns,) = [
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "CONFIG_FILES" for t in node.targets)
    ]
    shipped = {os.path.relpath(p, REPO_ROOT) for pattern in patterns for p in glob.glob(f"{REPO_ROOT}/{pattern}")}
    on_disk = {
        os.path.relpath(os.path.join(root, name), REPO_ROOT)
        for root, _, files in os.walk(f"{REPO_ROOT}/configs")
        for name in files
        if name.endswith((".py", ".yaml"))
    }
    assert shipped == on_disk and "configs/common/models/lsnet.py" in shipped


def _train_net_args(output_dir, *extra):
    resize = "mapper.augmentations.0"
    return default_argument_parser().parse_args(
        [
            "--config-file", "iou_aware://COCO-Detection/gfl_R_50_FPN_1x.py",
            *extra,
            "dataloader.train.dataset.names=shapes_tiny_train",
            "dataloader.test.dataset.names=shapes_tiny_val",
            f"dataloader.train.{resize}.short_edge_length=[128]",
            f"dataloader.train.{resize}.max_size=128",
            f"dataloader.test.{resize}.short_edge_length=128",
            f"dataloader.test.{resize}.max_size=128",
            "dataloader.train.total_batch_size=2",
            "dataloader.train.num_workers=0",
            "dataloader.test.num_workers=0",
            "model.num_classes=4",
            "model.test_score_thresh=0.0",  # an untrained model still detects: AP is a number
            "train.max_iter=2",
            "train.seed=0",
            "train.init_checkpoint=''",
            f"train.output_dir={output_dir}",
        ]
    )  # fmt: skip


def test_train_net_trains_and_evaluates_a_lazy_config(tmp_path, monkeypatch):
    monkeypatch.setattr(train_net, "setup", None)  # the yacs set-up is not for LazyConfigs
    results = train_net.main(_train_net_args(tmp_path / "train"))
    assert set(results) == {"bbox"} and math.isfinite(results["bbox"]["AP"])
    for name in ("model_final.pth", "config.yaml", "inference/shapes_tiny_val/coco_instances_results.json"):
        assert (tmp_path / "train" / name).is_file(), name
    saved = LazyConfig.load(str(tmp_path / "train" / "config.yaml"))
    assert saved.train.max_iter == 2 and saved.model.num_classes == 4
    record = json.loads((tmp_path / "train" / "run_record.json").read_text())
    assert record["iterations"] == 2 and record["metrics"]["bbox"]["AP"] == pytest.approx(results["bbox"]["AP"])

    args = _train_net_args(tmp_path / "eval", "--eval-only")
    args.opts.append(f"train.init_checkpoint={tmp_path / 'train' / 'model_final.pth'}")
    eval_results = train_net.main(args)
    assert eval_results["bbox"] == pytest.approx(results["bbox"], abs=1e-9, nan_ok=True)
