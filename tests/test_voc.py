"""PASCAL VOC: the shipped VOC configs train on a VOC-format folder through ``--register-voc`` and
are evaluated by the evaluator the dataset names (or COCO-style on request); broken files are named
at start-up; Detectron2 0.6's VOC loader and evaluator work on current NumPy."""

import importlib.util
import json
import math
import os

import cv2
import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_pascal_voc
from detectron2.engine import default_argument_parser

import train_net
from iou_aware.data import (
    DatasetCheckError,
    VOCFormatError,
    add_user_dataset_arguments,
    find_voc_problems,
    register_user_datasets,
)
from iou_aware.evaluation import build_evaluator, evaluator_type_for
from iou_aware.model_zoo import get_config
from iou_aware.modeling import config_value, model_requirements

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOC_CONFIGS = [
    "retinanet_R_50_FPN.yaml",
    "iou_aware_retinanet_R_50_FPN.yaml",
    "gfl_R_50_FPN.yaml",
    "lsnet_R_50_FPN.yaml",
]

# image id -> objects (class, xmin, ymin, xmax, ymax in VOC's 1-based pixels, difficult)
_IMAGES = {
    "000001": [("cat", 5, 6, 30, 40, 0), ("dog", 33, 20, 60, 58, 0)],
    "000002": [("dog", 10, 10, 50, 50, 0), ("cat", 40, 2, 62, 20, 1)],
    "000003": [("cat", 1, 1, 64, 48, 0)],
    "000004": [],  # no object
    "000005": [("cat", 8, 8, 40, 40, 0), ("dog", 30, 30, 60, 62, 1)],
    "000006": [("dog", 4, 20, 44, 60, 0), ("cat", 20, 4, 56, 30, 0)],
}
_SPLITS = {"train": ["000001", "000002", "000003", "000004"], "val": ["000005", "000006"]}
_SIZE = 64


def _xml(image_id, objects):
    body = "".join(
        f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>{difficult}</difficult>"
        f"<bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        for name, x0, y0, x1, y1, difficult in objects
    )
    return (
        f"<annotation><folder>VOC</folder><filename>{image_id}.jpg</filename>"
        f"<size><width>{_SIZE}</width><height>{_SIZE}</height><depth>3</depth></size>{body}</annotation>"
    )


def write_voc_folder(root):
    """A tiny VOC-layout folder: 6 JPEGs of 64 x 64 px, cats and dogs, two difficult objects and
    an image without objects; splits train (4 images) and val (2)."""
    rng = np.random.default_rng(0)
    for sub in ("Annotations", "JPEGImages", os.path.join("ImageSets", "Main")):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    for image_id, objects in _IMAGES.items():
        image = rng.integers(0, 255, (_SIZE, _SIZE, 3), dtype=np.uint8)
        for name, x0, y0, x1, y1, _ in objects:
            image[y0 - 1 : y1, x0 - 1 : x1] = (40, 200, 40) if name == "cat" else (200, 40, 200)
        cv2.imwrite(os.path.join(root, "JPEGImages", f"{image_id}.jpg"), image)
        with open(os.path.join(root, "Annotations", f"{image_id}.xml"), "w") as f:
            f.write(_xml(image_id, objects))
    for split, ids in {**_SPLITS, "trainval": _SPLITS["train"] + _SPLITS["val"]}.items():
        with open(os.path.join(root, "ImageSets", "Main", f"{split}.txt"), "w") as f:
            f.write("\n".join(ids) + "\n")
    return str(root)


def _argv(config, voc_root, output_dir, *extra):
    """``config`` shrunk for a CPU test: the slim backbone from scratch, 64 px, 2 iterations."""
    return [
        "--config-file", f"{REPO_ROOT}/configs/PascalVOC-Detection/{config}",
        "--register-voc", "voc_tiny_train", voc_root, "train", "--register-voc", "voc_tiny_val", voc_root, "val",
        *extra,
        "DATASETS.TRAIN", "('voc_tiny_train',)", "DATASETS.TEST", "('voc_tiny_val',)",
        "MODEL.RETINANET.NUM_CLASSES", "2", "MODEL.GFL.NUM_CLASSES", "2", "MODEL.LSNET.NUM_CLASSES", "2",
        "MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", "MODEL.BACKBONE.NAME", "build_slim_resnet_fpn_backbone",
        "MODEL.BACKBONE.FREEZE_AT", "0", "MODEL.RESNETS.NORM", "BN", "MODEL.RESNETS.STEM_OUT_CHANNELS", "16",
        "MODEL.RESNETS.RES2_OUT_CHANNELS", "16", "MODEL.FPN.OUT_CHANNELS", "64",
        "MODEL.RETINANET.NUM_CONVS", "1", "MODEL.GFL.NUM_CONVS", "1", "MODEL.LSNET.NUM_CONVS", "1",
        "MODEL.LSNET.DEFORMABLE_TOWERS", "False",
        "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "64", "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "64",
        "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "2", "SOLVER.WARMUP_ITERS", "1", "SOLVER.STEPS", "(1,)",
        "DATALOADER.NUM_WORKERS", "0", "SEED", "0", "OUTPUT_DIR", str(output_dir),
        # So that an untrained model still outputs boxes.
        "MODEL.RETINANET.SCORE_THRESH_TEST", "0.0", "MODEL.GFL.SCORE_THRESH_TEST", "0.0", "MODEL.LSNET.SCORE_THRESH_TEST", "0.0",
    ]  # fmt: skip


def _main(argv):
    return train_net.main(add_user_dataset_arguments(default_argument_parser()).parse_args(argv))


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory):
    return write_voc_folder(tmp_path_factory.mktemp("voc"))


@pytest.fixture(scope="module", params=VOC_CONFIGS)
def trained(request, voc_root, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("train")
    return request.param, output_dir, _main(_argv(request.param, voc_root, output_dir))


@pytest.mark.parametrize("config", VOC_CONFIGS)
def test_voc_configs_have_the_papers_voc_settings(config):
    cfg = get_config(f"PascalVOC-Detection/{config}")
    assert config_value(cfg, model_requirements(cfg).class_count_key) == 20
    assert cfg.DATASETS.TRAIN == ("voc_2007_trainval", "voc_2012_trainval") and cfg.DATASETS.TEST == ("voc_2007_test",)
    assert (cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN, cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST) == (
        (600,),
        1000,
        600,
        1000,
    )
    assert (cfg.SOLVER.MAX_ITER, cfg.SOLVER.STEPS, cfg.SOLVER.IMS_PER_BATCH, cfg.SOLVER.BASE_LR) == (
        18000,
        (12000, 16000),
        16,
        0.01,
    )
    assert cfg.MODEL.WEIGHTS == "detectron2://ImageNetPretrained/MSRA/R-50.pkl" and cfg.TEST.EVALUATOR == "auto"


def test_each_voc_config_trains_and_is_evaluated_by_the_voc_evaluator(trained):
    config, output_dir, results = trained
    # PascalVOCDetectionEvaluator's keys (COCOEvaluator would add APs / APm / APl).
    assert set(results) == {"bbox"} and set(results["bbox"]) == {"AP", "AP50", "AP75"}
    assert all(math.isfinite(v) for v in results["bbox"].values())
    assert (output_dir / "model_final.pth").is_file()


@pytest.mark.parametrize("trained", ["iou_aware_retinanet_R_50_FPN.yaml"], indirect=True)
def test_coco_style_ap_on_a_voc_dataset_ignores_difficult_objects(trained, voc_root, tmp_path):
    config, output_dir, _ = trained
    argv = _argv(config, voc_root, tmp_path, "--eval-only") + [
        "MODEL.WEIGHTS",
        str(output_dir / "model_final.pth"),
        "TEST.EVALUATOR",
        "coco",
    ]
    results = _main(argv)
    assert {"AP", "AP50", "AP75", "APs", "APm", "APl", "AP60", "AP90"} <= set(
        results["bbox"]
    )  # ThresholdedCOCOEvaluator
    with open(MetadataCatalog.get("voc_tiny_val").json_file) as f:
        ground_truth = json.load(f)
    crowd = [(a["image_id"], a["category_id"]) for a in ground_truth["annotations"] if a["iscrowd"]]
    assert crowd == [("000005", 1)] and len(ground_truth["annotations"]) == 4  # the difficult dog
    assert ground_truth["annotations"][0]["bbox"] == [
        7.0,
        7.0,
        33.0,
        33.0,
    ]  # Detectron2's shift of VOC's 1-based pixels


def test_class_names_are_read_from_the_xml_files_sorted_and_logged(voc_root, caplog):
    import logging

    args = add_user_dataset_arguments(default_argument_parser()).parse_args(
        ["--register-voc", "voc_names_a", voc_root, "train", "--register-voc", "voc_names_b", voc_root, "val"]
    )
    # Heard at the module's logger: Detectron2's setup_logger (run by earlier tests) may stop
    # the "iou_aware" logger from propagating to the root, where caplog listens.
    module_logger = logging.getLogger("iou_aware.data.user_datasets")
    module_logger.addHandler(caplog.handler)
    try:
        assert register_user_datasets(args) == ["voc_names_a", "voc_names_b"]
    finally:
        module_logger.removeHandler(caplog.handler)
    assert "2 classes read from the XML files" in caplog.text and "cat, dog" in caplog.text
    metadata = MetadataCatalog.get("voc_names_a")
    assert metadata.thing_classes == ["cat", "dog"] and metadata.evaluator_type == "pascal_voc"
    records = DatasetCatalog.get("voc_names_a")
    assert [r["image_id"] for r in records] == _SPLITS["train"] and records[3]["annotations"] == []
    assert (
        records[0]["annotations"][1]["bbox"] == [32.0, 19.0, 60.0, 58.0]
        and records[0]["annotations"][1]["category_id"] == 1
    )


def test_class_names_given_on_the_command_line_and_an_unknown_class_is_named(voc_root, tmp_path):
    (tmp_path / "classes.txt").write_text("dog\ncat\nbird\n")
    args = add_user_dataset_arguments(default_argument_parser()).parse_args(
        ["--register-voc", "voc_given", voc_root, "val", "--voc-classes", str(tmp_path / "classes.txt")]
    )
    register_user_datasets(args)
    assert MetadataCatalog.get("voc_given").thing_classes == ["dog", "cat", "bird"]
    assert DatasetCatalog.get("voc_given")[0]["annotations"][0]["category_id"] == 1  # a cat
    args.voc_classes = "dog"
    register_user_datasets(args)
    with pytest.raises(VOCFormatError, match=r"000005.xml: object #0 is a 'cat', not one of the dataset's 1 classes"):
        DatasetCatalog.get("voc_given")


def test_the_evaluator_follows_the_dataset_or_test_evaluator(voc_root):
    register_user_datasets(
        add_user_dataset_arguments(default_argument_parser()).parse_args(
            ["--register-voc", "voc_choice", voc_root, "val"]
        )
    )
    cfg = get_config("PascalVOC-Detection/retinanet_R_50_FPN.yaml")
    assert evaluator_type_for(cfg, "voc_choice") == "pascal_voc"
    assert evaluator_type_for(cfg, "voc_2007_test") == "pascal_voc"  # Detectron2's builtin
    assert evaluator_type_for(cfg, "shapes_tiny_val") == "coco"  # no evaluator_type
    cfg.TEST.EVALUATOR = "coco"
    assert evaluator_type_for(cfg, "voc_choice") == "coco"
    cfg.TEST.EVALUATOR = "pascal_voc"
    with pytest.raises(ValueError, match="shapes_tiny_val is not one"):
        build_evaluator(cfg, "shapes_tiny_val", None)
    cfg.TEST.EVALUATOR = "voc"
    with pytest.raises(ValueError, match=r"TEST.EVALUATOR = 'voc'; use one of \('auto', 'coco', 'pascal_voc'\)"):
        evaluator_type_for(cfg, "voc_choice")


def test_a_file_the_voc_evaluator_cannot_read_is_named_before_evaluating(tmp_path):
    root = write_voc_folder(tmp_path / "voc")
    path = os.path.join(root, "Annotations", "000006.xml")
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text.replace("<pose>Unspecified</pose>", "", 1).replace("<xmin>4</xmin>", "<xmin>4.5</xmin>"))
    register_user_datasets(
        add_user_dataset_arguments(default_argument_parser()).parse_args(["--register-voc", "voc_noeval", root, "val"])
    )
    cfg = get_config("PascalVOC-Detection/retinanet_R_50_FPN.yaml")
    with pytest.raises(
        VOCFormatError,
        match=r"(?s)000006.xml: object #0 has <xmin> '4.5', not an integer.*000006.xml: object #0 has no <pose>.*TEST.EVALUATOR \"coco\"",
    ):
        build_evaluator(cfg, "voc_noeval", str(tmp_path / "out"))
    assert DatasetCatalog.get("voc_noeval")  # the loader reads it


@pytest.mark.parametrize("breakage", ["broken_xml", "missing_jpeg"])
def test_a_broken_xml_or_a_missing_jpeg_is_named_at_start_up(breakage, tmp_path):
    root = write_voc_folder(tmp_path / "voc")
    if breakage == "broken_xml":
        with open(os.path.join(root, "Annotations", "000002.xml"), "w") as f:
            f.write("<annotation><size><width>64</width>")
        expected, error = r"Annotations/000002.xml: not valid XML", VOCFormatError
    else:
        os.remove(os.path.join(root, "JPEGImages", "000003.jpg"))
        expected, error = r"image file not found, e.g. image \S*JPEGImages/000003.jpg", DatasetCheckError
    output_dir = tmp_path / "out"
    with pytest.raises(error, match=expected):
        _main(_argv("retinanet_R_50_FPN.yaml", root, output_dir))
    assert (
        not (output_dir / "metrics.json").exists() and not (output_dir / "last_checkpoint").exists()
    )  # before training


def test_a_one_image_split_is_named(tmp_path):
    root = write_voc_folder(tmp_path / "voc")
    assert find_voc_problems(root, "val") == []
    split = os.path.join(root, "ImageSets", "Main", "one.txt")
    with open(split, "w") as f:
        f.write("000005\n")
    assert find_voc_problems(root, "one") == [f"{split}: lists one image; Detectron2's VOC loader needs two or more"]


def _patch_script():
    spec = importlib.util.spec_from_file_location(
        "patch_detectron2_sdist", f"{REPO_ROOT}/scripts/patch_detectron2_sdist.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_sdist_patch_replaces_the_removed_numpy_aliases():
    patch = _patch_script()
    loader = "    with PathManager.open(path) as f:\n        fileids = np.loadtxt(f, dtype=np.str)\n"  # Detectron2 0.6, line 35
    fixed = patch.fix_numpy_aliases(loader, "detectron2/data/datasets/pascal_voc.py")
    assert "fileids = np.loadtxt(f, dtype=str)\n" in fixed and "np.str" not in fixed
    assert patch.fix_numpy_aliases(fixed, "detectron2/data/datasets/pascal_voc.py") == fixed  # idempotent
    evaluator = '        difficult = np.array([x["difficult"] for x in R]).astype(np.bool)\n'
    assert patch.fix_numpy_aliases(evaluator, "detectron2/evaluation/pascal_voc_evaluation.py").endswith(
        ".astype(bool)\n"
    )
    with pytest.raises(SystemExit, match="cannot patch"):
        patch.fix_numpy_aliases("nothing to patch", "detectron2/data/datasets/pascal_voc.py")


def test_detectron2s_own_voc_registration_loads_a_split_on_the_installed_build(tmp_path):
    root = write_voc_folder(tmp_path / "voc")
    register_pascal_voc("voc_installed_build", root, "trainval", 2007, ["cat", "dog"])
    records = DatasetCatalog.get("voc_installed_build")
    assert [r["image_id"] for r in records] == _SPLITS["train"] + _SPLITS["val"]
    assert sum(len(r["annotations"]) for r in records) == 9  # difficult objects included, as Detectron2 trains
