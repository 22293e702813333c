"""COCO detection data as the yaml configs read it with Detectron2's INPUT / DATALOADER defaults
(shorter side 800, at most 1333, horizontal flips; test at 800), evaluated by
``ThresholdedCOCOEvaluator`` into ``<train.output_dir>/inference/<dataset>``. Detectron2's
``common/data/coco.py`` with those values."""

from detectron2.config import LazyCall as L
from detectron2.model_zoo import get_config

from iou_aware.evaluation import ThresholdedCOCOEvaluator
from iou_aware.utils import detectron2_has_compiled_ops

dataloader = get_config("common/data/coco.py").dataloader

# INPUT.MIN_SIZE_TRAIN, MAX_SIZE_TRAIN, MIN_SIZE_TRAIN_SAMPLING; INPUT.RANDOM_FLIP "horizontal".
dataloader.train.mapper.augmentations[0].update(short_edge_length=(800,), max_size=1333, sample_style="choice")
# MODEL.MASK_ON False.
dataloader.train.mapper.use_instance_mask = False
dataloader.train.update(total_batch_size=16, num_workers=4, aspect_ratio_grouping=True)
dataloader.test.num_workers = 4
# INPUT.MIN_SIZE_TEST, MAX_SIZE_TEST.
dataloader.test.mapper.augmentations[0].update(short_edge_length=800, max_size=1333, sample_style="choice")

dataloader.evaluator = L(ThresholdedCOCOEvaluator)(
    dataset_name="${..test.dataset.names}",
    tasks=("bbox",),
    output_dir="${train.output_dir}/inference/${.dataset_name}",
    use_fast_impl=L(detectron2_has_compiled_ops)(),
)
