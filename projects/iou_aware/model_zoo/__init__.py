"""The package's configs, shipped inside it, as Detectron2's ``model_zoo`` ships Detectron2's.

``configs/`` at the top of the repository is the one copy (``model_zoo/configs`` is a link to it in
the source tree; a wheel holds the files). Paths are relative to that folder:

    from iou_aware.model_zoo import get_config
    cfg = get_config("Shapes/iou_aware_retinanet_slim_R_FPN.yaml")  # or "iou_aware://Shapes/..."
    lazy = get_config("COCO-Detection/gfl_R_50_FPN_1x.py")  # a LazyConfig (LazyConfig.load)

The ``.py`` configs are LazyConfigs: ``COCO-*/*.py`` beside the yaml of the same model, sharing
pieces in ``common/`` through relative imports.

``resolve_config_file`` is what every entry point (``train_net.py``, the demo, the tools) uses: it
accepts ``iou_aware://<path>``, ``detectron2://<path>`` (Detectron2's own configs) and plain files.
"""

import os
from typing import List, Union

from detectron2.config import CfgNode, LazyConfig, get_cfg
from omegaconf import DictConfig

from ..config import add_iou_aware_config

__all__ = ["PREFIX", "get_config_file", "get_config", "list_configs", "load_config", "resolve_config_file"]

PREFIX = "iou_aware://"
DETECTRON2_PREFIX = "detectron2://"
_CONFIGS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


def list_configs(lazy: bool = False) -> List[str]:
    """Every shipped model config as a path relative to the configs folder: the yaml configs (not
    the Base-* files), or with ``lazy`` the LazyConfig ``.py`` ones (not the pieces in common/)."""
    found = []
    for root, _, files in os.walk(_CONFIGS_DIR, followlinks=True):
        for name in files:
            path = os.path.relpath(os.path.join(root, name), _CONFIGS_DIR).replace(os.sep, "/")
            if lazy:
                if name.endswith(".py") and not path.startswith("common/"):
                    found.append(path)
            elif name.endswith(".yaml") and not name.startswith("Base-"):
                found.append(path)
    return sorted(found)


def get_config_file(config_path: str) -> str:
    """Absolute path of a shipped config, given as ``Family/name.yaml`` (``iou_aware://`` optional)."""
    if config_path.startswith(PREFIX):
        config_path = config_path[len(PREFIX) :]
    path = os.path.join(_CONFIGS_DIR, config_path)
    if not os.path.isfile(path):
        raise RuntimeError(
            f"{config_path} is not a config of iou_aware (looked in {_CONFIGS_DIR}); shipped: "
            f"{', '.join(list_configs() + list_configs(lazy=True))}"
        )
    return path


def resolve_config_file(path: str) -> str:
    """A file path for ``path``: ``iou_aware://...`` and ``detectron2://...`` are looked up in the
    packages' model zoos; anything else is returned unchanged (a file of the user's)."""
    if path.startswith(PREFIX):
        return get_config_file(path)
    if path.startswith(DETECTRON2_PREFIX):
        from detectron2 import model_zoo

        return model_zoo.get_config_file(path[len(DETECTRON2_PREFIX) :])
    return path


def get_config(config_path: str) -> Union[CfgNode, DictConfig]:
    """Detectron2's defaults, this package's keys (``add_iou_aware_config``) and the shipped config
    (``Family/name.yaml`` or ``iou_aware://Family/name.yaml``); not frozen. A ``.py`` path gives
    the LazyConfig (``LazyConfig.load``): ``instantiate(cfg.model)`` builds the model."""
    if config_path.endswith(".py"):
        return LazyConfig.load(get_config_file(config_path))
    cfg = get_cfg()
    add_iou_aware_config(cfg)
    cfg.merge_from_file(get_config_file(config_path))
    return cfg


def load_config(config_file: str, opts=()) -> CfgNode:
    """The frozen config of a tool: Detectron2's defaults, this package's keys, ``config_file``
    (any form :func:`resolve_config_file` takes) and ``KEY VALUE`` overrides; MODEL.DEVICE falls
    back to "cpu" without CUDA."""
    import torch

    cfg = get_cfg()
    add_iou_aware_config(cfg)
    cfg.merge_from_file(resolve_config_file(config_file))
    cfg.merge_from_list(list(opts))
    if not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"
    cfg.freeze()
    return cfg
