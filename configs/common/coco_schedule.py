"""Learning-rate multipliers as Detectron2's WarmupMultiStepLR builds them from SOLVER.STEPS,
MAX_ITER, GAMMA, WARMUP_ITERS and WARMUP_FACTOR. Expressed as fractions of the schedule (as
Detectron2's ``common/coco_schedule.py``), so that a shorter ``train.max_iter`` scales them."""

from detectron2.config import LazyCall as L
from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import MultiStepParamScheduler


def multi_step_lr(steps=(60000, 80000), max_iter=90000, gamma=0.1, warmup_iters=1000, warmup_factor=0.001):
    """The multiplier of SOLVER.STEPS ``steps`` over SOLVER.MAX_ITER ``max_iter``, with linear warmup."""
    steps = [s for s in steps if s <= max_iter]
    return L(WarmupParamScheduler)(
        scheduler=L(MultiStepParamScheduler)(
            values=[gamma**k for k in range(len(steps) + 1)],
            milestones=steps,
            num_updates=max_iter,
        ),
        warmup_length=min(warmup_iters / max_iter, 1.0),
        warmup_method="linear",
        warmup_factor=warmup_factor,
    )
