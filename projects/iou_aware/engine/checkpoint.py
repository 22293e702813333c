"""Checkpoint loading that fails loudly where Detectron2 only logs: a missing weights file, or a
checkpoint of another architecture used for evaluation."""

import os
from typing import List

from detectron2.checkpoint import DetectionCheckpointer

__all__ = ["IncompatibleCheckpointError", "check_weights_file", "EvaluationCheckpointer"]


class IncompatibleCheckpointError(RuntimeError):
    """The checkpoint does not hold the weights of the model it is loaded into."""


def check_weights_file(weights: str) -> None:
    """Raise FileNotFoundError naming MODEL.WEIGHTS when it is a local path that does not exist.
    Empty (train from scratch) and URLs (``detectron2://``, ``https://``, ...) pass."""
    if weights and "://" not in weights and not os.path.isfile(weights):
        raise FileNotFoundError(f"MODEL.WEIGHTS file not found: {weights}")


class EvaluationCheckpointer(DetectionCheckpointer):
    """DetectionCheckpointer for ``--eval-only``: every parameter of the model must come from the
    checkpoint, with its shape. Detectron2 logs missing or mis-shaped weights and goes on, which
    is right for fine-tuning but evaluates a partly random model when the checkpoint belongs to
    another meta-architecture."""

    def __init__(self, model, save_dir: str = "", *, class_count_key: str = "", **checkpointables):
        """``class_count_key``: the config key of the model's class count, named in the error
        when a class-dependent layer has another shape."""
        super().__init__(model, save_dir, **checkpointables)
        self.class_count_key = class_count_key

    def _load_model(self, checkpoint):
        checkpoint_keys = list(checkpoint.get("model", {}))  # fvcore pops "model" while loading
        incompatible = super()._load_model(checkpoint)
        parameters = {name for name, _ in self.model.named_parameters()}
        shapes = {k: (tuple(found), tuple(wanted)) for k, found, wanted in incompatible.incorrect_shapes}
        wrong_shape = [k for k in shapes if k in parameters]
        # A mis-shaped weight is dropped before loading, so it is also "missing": count it once.
        missing: List[str] = [k for k in incompatible.missing_keys if k in parameters and k not in shapes]
        if missing or wrong_shape:
            found = sorted({".".join(k.split(".")[:2]) for k in checkpoint_keys})[:6]
            model_name = type(self.model).__name__
            problems = []
            if missing:
                problems.append(f"{len(missing)} of its {len(parameters)} parameters are missing (e.g. {missing[:3]})")
            if wrong_shape:
                examples = ", ".join(
                    f"{k}: {shapes[k][0]} in the checkpoint, {shapes[k][1]} in the model" for k in wrong_shape[:3]
                )
                problems.append(f"{len(wrong_shape)} have another shape ({examples})")
            causes = "another MODEL.META_ARCHITECTURE or head config"
            if wrong_shape and self.class_count_key:
                causes = f"another class count ({self.class_count_key}) or {causes}"
            raise IncompatibleCheckpointError(
                f"The checkpoint does not match the {model_name} built from the config: "
                + "; ".join(problems)
                + f". It holds modules like {found}: was it trained with {causes}?"
            )
        return incompatible
