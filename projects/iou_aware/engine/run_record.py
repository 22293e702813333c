"""The run record: a small JSON file that every training (or evaluation) run writes beside its
outputs, so that a result can be committed as data and every table rebuilt from such files.

    {"config": "configs/Shapes/gfl_slim_R_FPN.yaml", "overrides": ["SEED", "42"], "seed": 42,
     "commit": "<git commit of the package>", "dirty": false, "iterations": 1000, "ims_per_batch": 8,
     "metrics": {"bbox": {"AP": 46.9, "AP50": ..., "AP60": ..., ...}}, "train_time_s": 412.3,
     "machine": {"cpu_cores": 2, "device": "cpu", "gpu": null, "torch": "...", "detectron2": "..."},
     "finished": "2026-12-07T05:00:00+00:00", "eval_only": false}

Metrics are Detectron2's evaluation results as returned by the trainer (NaN written as null).
"""

import datetime
import json
import math
import os
import subprocess
from typing import Any, Dict, Optional, Sequence

import torch

__all__ = [
    "RUN_RECORD_FILE",
    "EVAL_RECORD_FILE",
    "git_commit",
    "machine_description",
    "nan_to_none",
    "build_run_record",
    "write_run_record",
]

RUN_RECORD_FILE = "run_record.json"
EVAL_RECORD_FILE = "eval_record.json"  # an --eval-only run's: a training's record in the same folder stays
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def git_commit(path: str = _PACKAGE_DIR):
    """(commit, dirty) of the git checkout holding ``path``; (None, None) outside a checkout
    (an installed wheel). ``dirty``: tracked files differ from the commit."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=path,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None, None
    return commit, bool(status)


def machine_description(device: str) -> Dict[str, Any]:
    """Cores this process may use, the model's device, the GPU's name, and the library versions."""
    import detectron2

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = torch.cuda.get_device_name(0) if device.startswith("cuda") and torch.cuda.is_available() else None
    return {
        "cpu_cores": cores,
        "device": device,
        "gpu": gpu,
        "torch": torch.__version__,
        "detectron2": detectron2.__version__,
    }


def nan_to_none(value):
    """``value`` (nested dicts of numbers) with every NaN / inf float replaced by None (JSON null)."""
    if isinstance(value, dict):
        return {k: nan_to_none(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def build_run_record(
    *,
    config_file: str,
    overrides: Sequence[str],
    seed: int,
    iterations: int,
    ims_per_batch: int,
    metrics: Dict[str, Dict[str, float]],
    train_time_s: Optional[float],
    device: str,
    eval_only: bool = False,
    weights: Optional[str] = None,
) -> Dict[str, Any]:
    """The record of one run (see the module docstring); ``config_file`` is made relative to
    the current folder when it lies inside it. An evaluation (``eval_only``) trains nothing: its
    ``iterations`` and ``ims_per_batch`` are null, ``weights`` names what it evaluated."""
    commit, dirty = git_commit()
    if os.path.isabs(config_file) and os.path.commonpath([config_file, os.getcwd()]) == os.getcwd():
        config_file = os.path.relpath(config_file)
    return {
        "config": config_file,
        "overrides": [str(x) for x in overrides],
        "seed": int(seed),
        "commit": commit,
        "dirty": dirty,
        "iterations": None if eval_only else int(iterations),
        "ims_per_batch": None if eval_only else int(ims_per_batch),
        "weights": weights or None,
        "metrics": nan_to_none({task: dict(values) for task, values in (metrics or {}).items()}),
        "train_time_s": None if train_time_s is None else round(float(train_time_s), 1),
        "machine": machine_description(device),
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "eval_only": bool(eval_only),
    }


def write_run_record(output_dir: str, record: Dict[str, Any]) -> str:
    """Write ``record`` to ``output_dir/run_record.json`` (``eval_record.json`` for an evaluation)
    atomically and return the path."""
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, EVAL_RECORD_FILE if record.get("eval_only") else RUN_RECORD_FILE)
    with open(path + ".tmp", "w") as f:
        json.dump(record, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(path + ".tmp", path)
    return path
