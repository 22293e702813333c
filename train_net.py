#!/usr/bin/env python
"""Train and evaluate iou_aware models (and any stock Detectron2 model) with Detectron2's trainer.

    python train_net.py --config-file configs/Shapes/retinanet_slim_R_FPN.yaml
    python train_net.py --config-file <cfg> --eval-only MODEL.WEIGHTS <checkpoint.pth>
    python train_net.py --config-file <cfg> --num-gpus 8 [KEY VALUE ...]
    python train_net.py --config-file <cfg> --register-coco my_train train.json images/ \
        --register-coco my_val val.json images/ DATASETS.TRAIN "('my_train',)" DATASETS.TEST "('my_val',)"
    python train_net.py --config-file configs/PascalVOC-Detection/iou_aware_retinanet_R_50_FPN.yaml \
        --register-voc my_train data/VOC train --register-voc my_val data/VOC val \
        DATASETS.TRAIN "('my_train',)" DATASETS.TEST "('my_val',)" MODEL.RETINANET.NUM_CLASSES 3
    python train_net.py --config-file configs/COCO-Detection/gfl_R_50_FPN_1x.py train.max_iter=1000

A ``.py`` config is a LazyConfig, trained as Detectron2's tools/lazyconfig_train_net.py does
(iou_aware.engine.lazy; overrides are ``key=value``, ``--eval-only`` loads train.init_checkpoint).

Same flags as Detectron2's tools/train_net.py. Without a GPU, MODEL.DEVICE falls back to "cpu" and
``--num-gpus N`` starts N CPU processes on the gloo backend (iou_aware.engine.launch).
"""

import logging
import time

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.engine import default_argument_parser, default_setup
from detectron2.utils import comm

from iou_aware.config import add_iou_aware_config
from iou_aware.data import add_user_dataset_arguments, oks_sigmas_for, register_user_datasets
from iou_aware.engine import EvaluationCheckpointer, Trainer, check_weights_file, launch, lazy
from iou_aware.engine.run_record import build_run_record, write_run_record
from iou_aware.model_zoo import resolve_config_file
from iou_aware.modeling import model_requirements


def setup(args):
    """Build the frozen config from ``--config-file`` and the trailing ``KEY VALUE`` overrides."""
    # iou_aware:// and detectron2:// name files inside the packages; default_setup reads the file too.
    args.config_file = resolve_config_file(args.config_file)
    cfg = get_cfg()
    add_iou_aware_config(cfg)
    try:
        cfg.merge_from_file(args.config_file)
        cfg.merge_from_list(args.opts)
    except (KeyError, AssertionError) as e:
        # yacs reports an unknown key by KeyError (file) or AssertionError (command line).
        raise KeyError(
            f"{e.args[0] if e.args else e} (config {args.config_file} or a command-line override; "
            "Detectron2's keys are in detectron2/config/defaults.py, this package's in iou_aware/config.py)"
        ) from e
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        logging.getLogger("iou_aware").warning("No CUDA device: running on the CPU.")
        cfg.MODEL.DEVICE = "cpu"
    cfg.freeze()
    oks_sigmas_for(cfg, cfg.DATASETS.TEST)  # a keypoint set without known OKS sigmas fails here, not after training
    default_setup(cfg, args)
    return cfg


def main(args):
    """Train (or with ``--eval-only`` evaluate) and return the evaluation results dict."""
    register_user_datasets(args)  # --register-coco / --register-voc, in every process of a launch
    if lazy.is_lazy_config(args.config_file):
        return lazy_main(args)
    cfg = setup(args)
    resuming = args.resume and DetectionCheckpointer(None, save_dir=cfg.OUTPUT_DIR).has_checkpoint()
    if not resuming:  # before any work; with --resume the last checkpoint replaces MODEL.WEIGHTS
        check_weights_file(cfg.MODEL.WEIGHTS)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        class_count_key = model_requirements(cfg).class_count_key or ""
        checkpointer = EvaluationCheckpointer(model, save_dir=cfg.OUTPUT_DIR, class_count_key=class_count_key)
        checkpointer.resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        results, train_time_s = Trainer.test(cfg, model), None
    else:
        trainer = Trainer(cfg)
        trainer.resume_or_load(resume=args.resume)
        start = time.perf_counter()
        results = trainer.train()
        train_time_s = time.perf_counter() - start
    weights = cfg.MODEL.WEIGHTS if args.eval_only else None
    config = (cfg.SEED, cfg.SOLVER.MAX_ITER, cfg.SOLVER.IMS_PER_BATCH, cfg.MODEL.DEVICE)
    _record(args, cfg.OUTPUT_DIR, *config, results, train_time_s, weights)
    return results


def _record(args, output_dir, seed, iterations, ims_per_batch, device, results, train_time_s, weights=None):
    """Write the run record (iou_aware.engine.run_record) into the output folder, on the main process."""
    if not comm.is_main_process():
        return
    record = build_run_record(
        config_file=args.config_file,
        overrides=args.opts,
        seed=seed,
        iterations=iterations,
        ims_per_batch=ims_per_batch,
        metrics=results,
        train_time_s=train_time_s,
        device=str(device),
        eval_only=bool(args.eval_only),
        weights=weights,
    )
    write_run_record(output_dir, record)


def lazy_main(args):
    """``main`` for a LazyConfig: train (or with ``--eval-only`` evaluate ``train.init_checkpoint``)
    and return the evaluation results dict."""
    cfg = lazy.setup(args)
    resuming = args.resume and DetectionCheckpointer(None, save_dir=cfg.train.output_dir).has_checkpoint()
    if not resuming:
        check_weights_file(cfg.train.init_checkpoint)
    seed = cfg.train.get("seed", -1)
    batch = cfg.dataloader.train.get("total_batch_size", 0)
    device = cfg.train.get("device", "cpu")
    if args.eval_only:
        model = lazy.build_model(cfg)
        model = lazy.ddp_model(model)
        EvaluationCheckpointer(model, save_dir=cfg.train.output_dir).load(cfg.train.init_checkpoint)
        results = lazy.do_test(cfg, model)
        _record(args, cfg.train.output_dir, seed, cfg.train.max_iter, batch, device, results, None,
                cfg.train.init_checkpoint)  # fmt: skip
        return results
    start = time.perf_counter()
    results = lazy.do_train(args, cfg)
    _record(args, cfg.train.output_dir, seed, cfg.train.max_iter, batch, device, results, time.perf_counter() - start)
    return results


if __name__ == "__main__":
    args = add_user_dataset_arguments(default_argument_parser()).parse_args()
    print("Command Line Args:", args)
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
