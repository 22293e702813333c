"""mutmut 2 hooks: mutate only the models' loss, target, decoding and post-processing functions
(TARGETS below), and run, for each mutant, the test files that specify that code.

Read by mutmut from the working directory; ``dev/mutation/run.sh`` copies it into a throwaway
worktree of HEAD and runs mutmut there, so the checkout you work in is never mutated.
"""

import ast
import functools
import os
import sys

PACKAGE = "projects/iou_aware/"
# run.sh sets MUTATION_PYTEST to its fork server's client (dev/mutation/fork_server.py): pytest
# without re-importing torch and Detectron2 for every mutant.
PYTEST = os.environ.get("MUTATION_PYTEST", f"{sys.executable} -m pytest -x -q -p no:cacheprovider")

# source file -> (functions mutated, "Class.method" or "function"; the specification tests run on
# each of its mutants). A mutant they let survive is run again against every test file listed
# here (`mutmut run --rerun-all`), so "survived" means the whole set missed it.
TARGETS = {
    "modeling/meta_arch/gfl.py": (
        ["DistributionGuidedQualityPredictor.forward", "GFL.label_anchors", "GFL.losses", "GFL.forward_inference"],
        ["tests/test_gfl_pinned.py"],
    ),
    "modeling/postprocessing.py": (
        ["decode_dense_detections", "select_topk_candidates", "merge_levels_with_nms"],
        ["tests/test_postprocessing.py"],
    ),
    "modeling/box_regression.py": (
        ["distances_to_boxes", "boxes_to_distances", "anchor_points_and_strides"],
        ["tests/test_gfl_pinned.py"],
    ),
    "modeling/iou_branch.py": (
        ["iou_prediction_loss", "detection_confidence"],
        ["tests/test_iou_aware_pinned.py"],
    ),
    "modeling/meta_arch/iou_aware_retinanet.py": (
        [
            "IoUAwareRetinaNet.losses",
            "IoUAwareRetinaNet.forward_inference",
            "IoUAwareRetinaNet.inference_single_image",
        ],
        ["tests/test_iou_aware_pinned.py"],
    ),
    "modeling/roi_heads/iou_loss_roi_heads.py": (
        ["IoULossFastRCNNOutputLayers.box_reg_loss"],
        ["tests/test_iou_loss_roi_heads_pinned.py"],
    ),
    "modeling/meta_arch/lsnet.py": (
        [
            "LSNet.decode_landmarks",
            "LSNet.assign",
            "LSNet.losses",
            "LSNet._normalizer",
            "LSNet._landmark_loss",
            "LSNet.forward_inference",
        ],
        ["tests/test_lsnet_pinned.py"],
    ),
}
# The rest of the model-level suite, run on the survivors of the specification tests.
SURVIVOR_TESTS = [
    "tests/test_gfl.py",
    "tests/test_iou_aware_retinanet.py",
    "tests/test_iou_loss_roi_heads.py",
    "tests/test_lsnet.py",
    "tests/test_lsnet_tasks.py",
    "tests/test_postprocessing.py",
]
# Lines whose mutants cannot change a result: TensorBoard statistics.
HARMLESS = ("put_scalar(",)


@functools.lru_cache(maxsize=None)
def _mutable_lines(path):
    """0-based line indices inside the target functions of ``path``, docstrings excluded."""
    wanted = set(TARGETS[path[len(PACKAGE) :]][0])
    tree = ast.parse(open(path).read())
    lines = set()

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) and f"{prefix}{child.name}" in wanted:
                body = child.body
                if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
                    body = body[1:]  # the docstring
                for statement in body:
                    lines.update(range(statement.lineno - 1, statement.end_lineno))

    visit(tree, "")
    return frozenset(lines)


def init():
    """mutmut's start-up hook: one worker process for the whole run (mutmut 2.5 replaces it every
    100 mutants). Known: when that worker dies (seen here: an AssertionError in mutmut's own cache
    lookup, ``cached_mutation_status``), mutmut waits forever; the cache keeps what was measured."""
    import mutmut

    mutmut.CYCLE_PROCESS_AFTER = 10**9


def target_files():
    return [PACKAGE + path for path in TARGETS]


def all_test_files():
    return sorted({t for _, tests in TARGETS.values() for t in tests} | set(SURVIVOR_TESTS))


def pre_mutation(context):
    path = os.path.relpath(context.filename).replace(os.sep, "/")
    if not path.startswith(PACKAGE) or path[len(PACKAGE) :] not in TARGETS:
        context.skip = True
        return
    if context.current_line_index not in _mutable_lines(path) or any(
        h in context.current_source_line for h in HARMLESS
    ):
        context.skip = True
        return
    tests = [t for t in TARGETS[path[len(PACKAGE) :]][1] if os.path.isfile(t)]
    context.config.test_command = f"{PYTEST} {' '.join(tests)}"
