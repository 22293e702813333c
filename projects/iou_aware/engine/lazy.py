"""Training and evaluation of a LazyConfig (a ``.py`` config: ``model``, ``dataloader``,
``optimizer``, ``lr_multiplier``, ``train``), as Detectron2's ``tools/lazyconfig_train_net.py``;
``train_net.py --config-file x.py`` runs it.

Beyond Detectron2's loop: ``train.clip_grad`` (``enabled``, ``max_norm``, ``norm_type``) clips the
norm of all gradients together, as the yaml's SOLVER.CLIP_GRADIENTS CLIP_TYPE "full_model";
without CUDA, ``train.device`` "cuda" falls back to "cpu"; :func:`do_train` returns the results
of the last evaluation.
"""

import logging
from typing import Dict, Sequence

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import LazyConfig, instantiate
from detectron2.engine import AMPTrainer, SimpleTrainer, create_ddp_model, default_setup, default_writers, hooks
from detectron2.evaluation import inference_on_dataset, print_csv_format
from detectron2.utils import comm
from omegaconf import DictConfig

from .optimizer import clip_full_model_gradients

__all__ = [
    "is_lazy_config",
    "load_lazy_config",
    "setup",
    "build_model",
    "build_optimizer",
    "ddp_model",
    "do_test",
    "do_train",
]

logger = logging.getLogger("iou_aware")


def is_lazy_config(config_file: str) -> bool:
    """Whether ``config_file`` is a LazyConfig (a Python file) rather than a yacs yaml."""
    return config_file.endswith(".py")


def load_lazy_config(config_file: str, overrides: Sequence[str] = ()) -> DictConfig:
    """``LazyConfig.load`` of ``config_file`` (``iou_aware://`` and ``detectron2://`` paths too)
    with ``key=value`` overrides; ``train.device`` "cuda..." becomes "cpu" without CUDA."""
    from ..model_zoo import resolve_config_file

    cfg = LazyConfig.load(resolve_config_file(config_file))
    cfg = LazyConfig.apply_overrides(cfg, list(overrides))
    if str(cfg.train.get("device", "cpu")).startswith("cuda") and not torch.cuda.is_available():
        logger.warning("No CUDA device: running on the CPU.")
        cfg.train.device = "cpu"
    return cfg


def setup(args) -> DictConfig:
    """The LazyConfig of ``args.config_file`` with the trailing ``key=value`` overrides, after
    Detectron2's ``default_setup`` (logging, config saved to ``train.output_dir``, seed)."""
    from ..model_zoo import resolve_config_file

    args.config_file = resolve_config_file(args.config_file)
    cfg = load_lazy_config(args.config_file, args.opts)
    default_setup(cfg, args)
    return cfg


def build_model(cfg: DictConfig) -> torch.nn.Module:
    """``instantiate(cfg.model)`` on ``cfg.train.device``."""
    model = instantiate(cfg.model)
    model.to(cfg.train.device)
    return model


def ddp_model(model: torch.nn.Module, **kwargs) -> torch.nn.Module:
    """Detectron2's ``create_ddp_model`` (the model itself in a single process); a CPU model, as in
    the gloo processes of :func:`iou_aware.engine.launch`, is wrapped without device ids."""
    if next(model.parameters()).device.type == "cpu":
        kwargs.setdefault("device_ids", None)
    return create_ddp_model(model, **kwargs)


def build_optimizer(cfg: DictConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """``instantiate(cfg.optimizer)`` on ``model``'s parameters, clipped as ``cfg.train.clip_grad`` says."""
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    clip = cfg.train.get("clip_grad", None)
    if clip is not None and clip.get("enabled", False):
        clip_full_model_gradients(optimizer, clip.max_norm, clip.get("norm_type", 2.0), key="train.clip_grad.max_norm")
    return optimizer


def do_test(cfg: DictConfig, model: torch.nn.Module) -> Dict:
    """Evaluate ``model`` on ``cfg.dataloader.test`` with ``cfg.dataloader.evaluator``; {} without
    an evaluator. The test loader is built first: it writes a synthetic dataset's files, which the
    evaluator reads."""
    if "evaluator" not in cfg.dataloader:
        return {}
    test_loader = instantiate(cfg.dataloader.test)
    results = inference_on_dataset(model, test_loader, instantiate(cfg.dataloader.evaluator))
    if comm.is_main_process():
        print_csv_format(results)
    return results


def do_train(args, cfg: DictConfig) -> Dict:
    """Train ``cfg.model`` for ``cfg.train.max_iter`` iterations with Detectron2's SimpleTrainer
    (AMPTrainer with ``train.amp.enabled``) and hooks: LR schedule, periodic checkpoints,
    evaluation every ``train.eval_period`` iterations and after the last, metrics. ``args.resume``
    continues from the last checkpoint in ``train.output_dir``, else the weights come from
    ``train.init_checkpoint``. Returns the results of the last evaluation ({} if none ran)."""
    model = build_model(cfg)
    logger.info("Model:\n{}".format(model))
    optimizer = build_optimizer(cfg, model)
    train_loader = instantiate(cfg.dataloader.train)

    model = ddp_model(model, **cfg.train.ddp)
    trainer = (AMPTrainer if cfg.train.amp.enabled else SimpleTrainer)(model, train_loader, optimizer)
    checkpointer = DetectionCheckpointer(model, cfg.train.output_dir, trainer=trainer)
    last_results = {}

    def evaluate():
        last_results.clear()
        last_results.update(do_test(cfg, model))
        return last_results

    trainer.register_hooks(
        [
            hooks.IterationTimer(),
            hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
            hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer) if comm.is_main_process() else None,
            hooks.EvalHook(cfg.train.eval_period, evaluate),
            hooks.PeriodicWriter(default_writers(cfg.train.output_dir, cfg.train.max_iter), period=cfg.train.log_period)
            if comm.is_main_process()
            else None,
        ]
    )
    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=args.resume)
    start_iter = trainer.iter + 1 if args.resume and checkpointer.has_checkpoint() else 0
    trainer.train(start_iter, cfg.train.max_iter)
    return dict(last_results)
