"""Training options read by ``train_net.py`` for a LazyConfig (``iou_aware.engine.lazy``):
Detectron2's ``common/train.py`` with the yaml defaults of the keys it shares with them
(SOLVER.CHECKPOINT_PERIOD 5000, TEST.EVAL_PERIOD 0: evaluate after the last iteration, SEED -1)
and ``clip_grad``: the norm of all gradients together clipped at ``max_norm`` when enabled
(SOLVER.CLIP_GRADIENTS.CLIP_TYPE "full_model")."""

from detectron2.model_zoo import get_config

train = get_config("common/train.py").train
train.update(
    eval_period=0,
    seed=-1,
    clip_grad=dict(enabled=False, max_norm=35.0, norm_type=2.0),
)
train.checkpointer.update(period=5000, max_to_keep=100)
