"""tools/experiments/iou_aware_analysis_table.py: tabulates tools/analyze.py reports over seeds."""

import json
import os

import pytest


def _tool(repo_root):
    import iou_aware_analysis_table

    return iou_aware_analysis_table


def _report(folder, ap_by_alpha, ap75_by_alpha, pearson, upper=None):
    os.makedirs(folder)
    report = {
        "alpha_sweep": {a: {"AP": ap, "AP75": ap75_by_alpha[a]} for a, ap in ap_by_alpha.items()},
        "localization": pearson,
    }
    if upper is not None:
        report["upper_bound"] = {"AP": upper}
    with open(os.path.join(folder, "results.json"), "w") as f:
        json.dump(report, f)
    return str(folder)


def test_ranking_gain_and_correlations_by_hand(repo_root, tmp_path):
    tool = _tool(repo_root)
    a = _report(
        tmp_path / "s1",
        {"0.5": 30.0, "1.0": 29.0, "0.3": 31.0},
        {"0.5": 34.0, "1.0": 33.0, "0.3": 35.0},
        {"pearson_pred_ious": 0.1, "pearson_pred_ious_any_class_overlapping": 0.5},
        upper=36.0,
    )
    b = _report(
        tmp_path / "s2",
        {"0.5": 26.0, "1.0": 26.0, "0.3": 25.0},
        {"0.5": 30.0, "1.0": 31.0, "0.3": 29.0},
        {"pearson_pred_ious": 0.3, "pearson_pred_ious_any_class_overlapping": 0.7},
        upper=32.0,
    )
    text = tool.main(["--analysis", "iou_aware", a, b])
    rows = [line for line in text.splitlines() if line.startswith("| iou_aware")]
    # AP at alpha 1: 29, 26 -> 27.50 +- 2.12 (sqrt(4.5)); alpha 0.5: 30, 26 -> 28.00 +- 2.83 (sqrt(8));
    # gain 1, 0 -> 0.50 +- 0.71; AP75 33, 31 -> 32.00 +- 1.41 and 34, 30 -> 32.00 +- 2.83; best alphas 0.3, 0.5
    # (the first of the ties 0.5 / 1.0 in the report's order); upper bound 36, 32 -> 34.00 +- 2.83.
    assert rows[0] == (
        "| iou_aware | 2 | 27.50 +- 2.12 | 28.00 +- 2.83 | 0.50 +- 0.71 | 32.00 +- 1.41 | 32.00 +- 2.83 "
        "| 0.3, 0.5 | 34.00 +- 2.83 |"
    )
    # Predicted IoU: same class, all 0.1, 0.3 -> 0.20 +- 0.14; any class, IoU > 0 0.5, 0.7 -> 0.60 +- 0.14; others absent.
    assert rows[1] == "| iou_aware | predicted IoU | 0.20 +- 0.14 | - | - | 0.60 +- 0.14 |"


def test_a_report_without_the_two_alphas_is_named(repo_root, tmp_path):
    tool = _tool(repo_root)
    folder = _report(tmp_path / "s1", {"0.5": 30.0}, {"0.5": 34.0}, {})
    with pytest.raises(SystemExit, match="lacks 0.5 or 1.0"):
        tool.main(["--analysis", "x", folder])
