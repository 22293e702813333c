"""SGD as ``iou_aware.engine.build_optimizer`` builds it from the yaml defaults (SOLVER.MOMENTUM
0.9, WEIGHT_DECAY 1e-4, WEIGHT_DECAY_NORM 0, BIAS_LR_FACTOR 1): Detectron2's ``common/optim.py``
with the parameter groups given the base rate, so that ``params.bias_lr_factor`` applies."""

from detectron2.model_zoo import get_config

SGD = get_config("common/optim.py").SGD
SGD.lr = 0.01
SGD.params.update(base_lr="${..lr}", weight_decay_norm=0.0, bias_lr_factor=1.0, weight_decay_bias=None)
