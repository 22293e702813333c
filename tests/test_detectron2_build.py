"""The detectron2._C placeholder (pure-Python Detectron2 build) fails clearly on compiled ops."""

import pytest

from iou_aware.utils import detectron2_has_compiled_ops

placeholder_only = pytest.mark.skipif(
    detectron2_has_compiled_ops(), reason="official Detectron2 build with compiled ops installed"
)


@placeholder_only
def test_compiled_op_raises_an_error_naming_the_op_and_the_fix():
    from detectron2 import _C

    with pytest.raises(AttributeError, match=r"deform_conv_forward.*compiled.*official Detectron2"):
        _C.deform_conv_forward


@placeholder_only
def test_rotated_box_op_fails_with_the_same_clear_error():
    import torch
    from detectron2.layers.rotated_boxes import pairwise_iou_rotated

    boxes = torch.tensor([[10.0, 10.0, 4.0, 4.0, 0.0]])
    with pytest.raises(AttributeError, match="box_iou_rotated is a compiled Detectron2 op"):
        pairwise_iou_rotated(boxes, boxes)


@placeholder_only
def test_detectron2_environment_report_still_works():
    from detectron2.utils.collect_env import collect_env_info

    assert "placeholder" in collect_env_info()
