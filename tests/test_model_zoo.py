"""The configs ship inside the package: ``iou_aware.model_zoo`` and ``iou_aware://`` paths, from this
checkout and from an installed wheel outside it."""

import os
import shutil
import subprocess
import sys
import textwrap

import pytest
from detectron2.engine import default_argument_parser

import train_net
from iou_aware import model_zoo

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_config_of_the_repository_is_shipped():
    shipped = set(model_zoo.list_configs())
    on_disk = {
        os.path.relpath(os.path.join(root, name), f"{REPO_ROOT}/configs")
        for root, _, files in os.walk(f"{REPO_ROOT}/configs")
        for name in files
        if name.endswith(".yaml") and not name.startswith("Base-")
    }
    assert shipped == on_disk and "Shapes/iou_aware_retinanet_slim_R_FPN.yaml" in shipped


def test_config_file_is_found_with_or_without_the_prefix():
    expected = os.path.realpath(f"{REPO_ROOT}/configs/Shapes/gfl_slim_R_FPN.yaml")
    for path in ("Shapes/gfl_slim_R_FPN.yaml", "iou_aware://Shapes/gfl_slim_R_FPN.yaml"):
        assert os.path.realpath(model_zoo.get_config_file(path)) == expected
    assert model_zoo.resolve_config_file("my/own.yaml") == "my/own.yaml"
    assert model_zoo.resolve_config_file("detectron2://COCO-Detection/retinanet_R_50_FPN_1x.yaml").endswith(
        "COCO-Detection/retinanet_R_50_FPN_1x.yaml"
    )


def test_an_unknown_config_is_named_with_the_shipped_ones():
    with pytest.raises(
        RuntimeError, match=r"Shapes/nope.yaml is not a config of iou_aware.*Shapes/gfl_slim_R_FPN.yaml"
    ):
        model_zoo.get_config_file("iou_aware://Shapes/nope.yaml")


def test_get_config_has_the_package_keys_and_the_base_config():
    cfg = model_zoo.get_config("iou_aware://Stickmen/lsnet_keypoint_slim_R_FPN.yaml")
    assert cfg.MODEL.META_ARCHITECTURE == "LSNet" and cfg.MODEL.LSNET.TASK == "keypoint"
    assert cfg.SOLVER.MAX_ITER == 1000  # from ../Base-Shapes.yaml, resolved inside the package


def test_train_net_takes_an_iou_aware_path():
    args = default_argument_parser().parse_args(
        ["--config-file", "iou_aware://Shapes/gflv2_slim_R_FPN.yaml", "OUTPUT_DIR", "/tmp/unused"]
    )
    cfg = train_net.setup(args)
    assert cfg.MODEL.META_ARCHITECTURE == "GFLV2"


def test_a_wheel_installed_elsewhere_loads_a_shipped_config_and_builds_the_model(tmp_path):
    """``pip wheel`` of a copy of the sources, installed into a throwaway venv that sees this
    environment's packages (torch, Detectron2), used from a folder outside the repository."""
    source = tmp_path / "source"
    shutil.copytree(
        f"{REPO_ROOT}/projects/iou_aware", source / "projects" / "iou_aware", symlinks=True,
        ignore=shutil.ignore_patterns("__pycache__"),
    )  # fmt: skip
    shutil.copytree(f"{REPO_ROOT}/configs", source / "configs")
    shutil.copy(f"{REPO_ROOT}/setup.py", source / "setup.py")
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(source)], check=True
    )
    (wheel,) = wheels.glob("iou_aware-*.whl")

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site_packages = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    # This environment's packages, after the venv's own (so the wheel's iou_aware comes first),
    # added as Python adds site-packages: their own .pth files run too (an official Detectron2
    # reached through the installer's .pth, an editable install).
    import site

    with open(os.path.join(site_packages, "test_environment.pth"), "w") as f:
        f.write("import site; " + "; ".join(f"site.addsitedir({p!r})" for p in site.getsitepackages()) + "\n")
    subprocess.run([*pip, "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)], check=True)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    script = textwrap.dedent(
        """
        import iou_aware
        from detectron2.modeling import build_model
        from iou_aware.model_zoo import get_config
        cfg = get_config("iou_aware://Shapes/iou_aware_retinanet_slim_R_FPN.yaml")
        cfg.MODEL.DEVICE = "cpu"
        model = build_model(cfg)
        print(iou_aware.__file__)
        print(type(model).__name__)
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([str(python), "-c", script], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    package_file, model_name = result.stdout.split()[-2:]
    assert package_file.startswith(site_packages)  # the installed wheel, not this checkout
    assert model_name == "IoUAwareRetinaNet"
