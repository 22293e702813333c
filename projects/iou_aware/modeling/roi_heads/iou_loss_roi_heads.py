"""Detectron2's Faster R-CNN box head with any box-regression loss of the package.

``MODEL.ROI_HEADS.NAME: "IoULossROIHeads"`` plus ``MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE`` (e.g.
``"focal_iou"``) and ``BBOX_REG_LOSS_WEIGHT``. Everything else is StandardROIHeads unchanged.
"""

from detectron2.config import configurable
from detectron2.layers import nonzero_tuple
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, FastRCNNOutputLayers, StandardROIHeads

from ..box_regression import box_iou_loss_options, box_regression_loss, check_box_reg_loss_type

__all__ = ["IoULossFastRCNNOutputLayers", "IoULossROIHeads"]


class IoULossFastRCNNOutputLayers(FastRCNNOutputLayers):
    """FastRCNNOutputLayers whose box loss is :func:`box_regression_loss` (smooth L1 or IoU family)."""

    @configurable
    def __init__(self, *args, iou_loss_options=None, **kwargs):
        """
        Args:
            iou_loss_options: focal coefficients of the IoU-family losses (MODEL.BOX_IOU_LOSS).
            args, kwargs: see FastRCNNOutputLayers; ``box_reg_loss_type`` may be any of
                BOX_REG_LOSS_TYPES.
        """
        super().__init__(*args, **kwargs)
        check_box_reg_loss_type(self.box_reg_loss_type, "MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE")
        self.iou_loss_options = dict(iou_loss_options or {})

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        ret["iou_loss_options"] = box_iou_loss_options(cfg)
        return ret

    def box_reg_loss(self, proposal_boxes, gt_boxes, pred_deltas, gt_classes):
        """Box loss of the foreground proposals, divided by the number of proposals (as stock).

        Args:
            proposal_boxes, gt_boxes: (R, 4) XYXY px. pred_deltas: (R, 4) or (R, 4 * num_classes).
            gt_classes: (R,) int64, num_classes = background.
        """
        if proposal_boxes.shape[1] != 4:
            raise ValueError("IoULossFastRCNNOutputLayers supports axis-aligned boxes only")
        fg_inds = nonzero_tuple((gt_classes >= 0) & (gt_classes < self.num_classes))[0]
        if pred_deltas.shape[1] == 4:  # class-agnostic regression
            fg_pred_deltas = pred_deltas[fg_inds]
        else:
            fg_pred_deltas = pred_deltas.view(-1, self.num_classes, 4)[fg_inds, gt_classes[fg_inds]]
        loss = box_regression_loss(
            fg_pred_deltas,
            proposal_boxes[fg_inds],
            gt_boxes[fg_inds],
            self.box2box_transform,
            loss_type=self.box_reg_loss_type,
            smooth_l1_beta=self.smooth_l1_beta,
            iou_loss_options=self.iou_loss_options,
        )
        return loss / max(gt_classes.numel(), 1.0)


@ROI_HEADS_REGISTRY.register()
class IoULossROIHeads(StandardROIHeads):
    """StandardROIHeads with :class:`IoULossFastRCNNOutputLayers` as its box predictor."""

    @classmethod
    def _init_box_head(cls, cfg, input_shape):
        ret = super()._init_box_head(cfg, input_shape)
        ret["box_predictor"] = IoULossFastRCNNOutputLayers(cfg, ret["box_head"].output_shape)
        return ret
