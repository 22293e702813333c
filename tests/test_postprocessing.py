"""The inference steps every dense head shares (`iou_aware.modeling.postprocessing`), by hand.

Each case is small enough to read off the answer: which (location, class) pairs survive the
threshold and the top-k, in which order, and which boxes survive class-wise NMS, the clip and the
detection cap.
"""

import torch
from detectron2.structures import Boxes, Instances

from iou_aware.modeling.postprocessing import merge_levels_with_nms, rasterize_polygons, select_topk_candidates


def _detections(boxes, scores, classes, image_size=(100, 100)):
    return Instances(
        image_size,
        pred_boxes=Boxes(torch.tensor(boxes, dtype=torch.float32)),
        scores=torch.tensor(scores),
        pred_classes=torch.tensor(classes),
    )


def test_select_topk_keeps_pairs_strictly_above_the_threshold_best_first():
    # 3 locations x 2 classes; 0.3 equals the threshold and is dropped (strictly greater).
    scores = torch.tensor([[0.10, 0.90], [0.30, 0.50], [0.70, 0.05]])
    kept, locations, classes = select_topk_candidates(scores, score_thresh=0.3, topk=10)
    assert torch.equal(kept, torch.tensor([0.90, 0.70, 0.50]))
    assert locations.tolist() == [0, 2, 1]
    assert classes.tolist() == [1, 0, 1]


def test_select_topk_caps_the_candidates_after_the_threshold():
    scores = torch.tensor([[0.10, 0.90], [0.40, 0.50], [0.70, 0.05]])
    kept, locations, classes = select_topk_candidates(scores, score_thresh=0.05, topk=2)
    assert torch.equal(kept, torch.tensor([0.90, 0.70]))
    assert locations.tolist() == [0, 2]
    assert classes.tolist() == [1, 0]


def test_select_topk_with_nothing_above_the_threshold_is_empty():
    kept, locations, classes = select_topk_candidates(torch.full((4, 3), 0.01), score_thresh=0.05, topk=5)
    assert kept.numel() == locations.numel() == classes.numel() == 0


def test_a_traced_top_k_follows_the_candidate_count_of_each_input():
    """Traced where fewer pairs than top-k pass the threshold (and where none does), then run with
    more than top-k and with none: the cap is part of the graph, not the tracing input's count."""

    def select(scores):
        return select_topk_candidates(scores, score_thresh=0.05, topk=3)

    few, many, none = torch.tensor([[0.9, 0.01], [0.5, 0.02]]), torch.rand(6, 2) * 0.5 + 0.1, torch.full((4, 2), 0.01)
    for example in (few, none):
        with torch.no_grad():
            traced = torch.jit.trace(select, (example,), check_trace=False)
        for scores in (few, many, none):
            for got, expected in zip(traced(scores), select(scores)):
                assert torch.equal(got, expected)
    assert len(select(many)[0]) == 3 and len(select(few)[0]) == 2


def test_overlapping_boxes_of_one_class_collapse_to_the_best_even_across_levels():
    # IoU([0,0,10,10], [1,0,11,10]) = 90 / 110 = 0.818 > 0.6: the 0.8 box of level 1 is suppressed.
    level0 = _detections([[0, 0, 10, 10]], [0.9], [0])
    level1 = _detections([[1, 0, 11, 10], [50, 50, 60, 60]], [0.8, 0.7], [0, 0])
    merged = merge_levels_with_nms([level0, level1], (100, 100), nms_thresh=0.6, max_detections=100)
    assert torch.equal(merged.scores, torch.tensor([0.9, 0.7]))
    assert merged.pred_boxes.tensor.tolist() == [[0, 0, 10, 10], [50, 50, 60, 60]]


def test_overlapping_boxes_of_different_classes_both_survive():
    merged = merge_levels_with_nms(
        [_detections([[0, 0, 10, 10], [1, 0, 11, 10]], [0.9, 0.8], [0, 1])], (100, 100), 0.6, 100
    )
    assert torch.allclose(merged.scores, torch.tensor([0.9, 0.8]))
    assert merged.pred_classes.tolist() == [0, 1]


def test_nms_threshold_is_the_iou_above_which_a_box_is_suppressed():
    # IoU 0.818: kept at threshold 0.85, suppressed at 0.8.
    boxes, scores, classes = [[0, 0, 10, 10], [1, 0, 11, 10]], [0.9, 0.8], [0, 0]
    assert len(merge_levels_with_nms([_detections(boxes, scores, classes)], (100, 100), 0.85, 100)) == 2
    assert len(merge_levels_with_nms([_detections(boxes, scores, classes)], (100, 100), 0.80, 100)) == 1


def test_max_detections_keeps_the_best_scores():
    boxes = [[20 * i, 0, 20 * i + 10, 10] for i in range(5)]  # disjoint
    scores = [0.2, 0.9, 0.5, 0.7, 0.3]
    merged = merge_levels_with_nms([_detections(boxes, scores, [0] * 5)], (100, 100), 0.6, max_detections=3)
    assert torch.allclose(merged.scores, torch.tensor([0.9, 0.7, 0.5]))
    assert merged.pred_boxes.tensor[:, 0].tolist() == [20, 60, 40]


def test_boxes_are_clipped_to_the_image_before_nms():
    # (height, width) = (50, 80): x clipped to 80, y to 50, negatives to 0.
    merged = merge_levels_with_nms([_detections([[-5, -3, 90, 60]], [0.9], [0])], (50, 80), 0.6, 100)
    assert merged.pred_boxes.tensor.tolist() == [[0, 0, 80, 50]]


def test_rasterized_square_covers_its_pixels():
    # COCO rasterization of the square (2,2)-(6,2)-(6,6)-(2,6): pixels 2..5 in x and y (16 pixels).
    square = torch.tensor([[[2.0, 2.0], [6.0, 2.0], [6.0, 6.0], [2.0, 6.0]]])
    mask = rasterize_polygons(square, 10, 10)
    assert mask.shape == (1, 10, 10) and mask.dtype == torch.bool
    expected = torch.zeros(10, 10, dtype=torch.bool)
    expected[2:6, 2:6] = True
    assert torch.equal(mask[0], expected)
