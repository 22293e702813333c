"""scripts/install.sh picks an official Detectron2 from the environment of $PYTHON, including a
venv, and exposes that environment's packages (a fake detectron2 with _C stands in for a build)."""

import os
import subprocess
import venv

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INSTALL = os.path.join(REPO_ROOT, "scripts", "install.sh")


def _venv_with_fake_detectron2(path):
    venv.EnvBuilder(with_pip=False).create(path)
    python = os.path.join(path, "bin", "python")
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    package = os.path.join(site, "detectron2")
    os.makedirs(package)
    with open(os.path.join(package, "__init__.py"), "w") as f:
        f.write('__version__ = "0.6-fake"\n')
    with open(os.path.join(package, "_C.py"), "w") as f:
        f.write("")
    return python, package


def _run(*args, **env):
    return subprocess.run(
        ["bash", INSTALL, *args], capture_output=True, text=True, env={**os.environ, **env}, cwd=REPO_ROOT
    )


def test_an_official_detectron2_in_a_venv_is_found(tmp_path):
    python, package = _venv_with_fake_detectron2(str(tmp_path / "user_env"))
    result = _run("--detect-only", PYTHON=python, VENV=str(tmp_path / "ours"))
    assert result.returncode == 0, result.stderr
    assert f"official Detectron2 found with {python}: {package}/__init__.py" in result.stdout
    assert not (tmp_path / "ours").exists()


def test_without_a_compiled_detectron2_the_fallback_is_announced(tmp_path):
    env = str(tmp_path / "plain_env")
    venv.EnvBuilder(with_pip=False).create(env)
    result = _run("--detect-only", PYTHON=os.path.join(env, "bin", "python"), VENV=str(tmp_path / "ours"))
    assert result.returncode == 0 and "the pb1-detectron2==0.6 fallback will be installed" in result.stdout


def test_the_created_venv_sees_the_user_venvs_packages(tmp_path):
    """The venv-creation step alone (--venv-only): the new venv imports the user venv's
    detectron2, which --system-site-packages alone would not expose."""
    python, package = _venv_with_fake_detectron2(str(tmp_path / "user_env"))
    ours = tmp_path / "ours"
    assert _run("--venv-only", PYTHON=python, VENV=str(ours)).returncode == 0
    found = subprocess.run(
        [str(ours / "bin" / "python"), "-c", "import detectron2; print(detectron2.__file__)"],
        capture_output=True,
        text=True,
    )
    assert found.stdout.strip() == f"{package}/__init__.py", found.stderr


def _editable_detectron2(tmp_path, style):
    """A user venv with a throwaway ``detectron2`` (with ``_C``) installed by ``pip install -e``:
    "finder" (PEP 660: a finder module and its .pth, as setuptools makes for a mapped package
    folder) or "egg-link" (the legacy ``setup.py develop``: an egg-link and easy-install.pth)."""
    env = tmp_path / "user_env"
    venv.EnvBuilder(with_pip=True).create(str(env))
    python = str(env / "bin" / "python")
    source = tmp_path / "source"
    # A finder is what setuptools writes for a package in a folder of another name; the egg-link
    # style adds the src/ folder itself to easy-install.pth.
    folder = source / ("d2_code" if style == "finder" else "src/detectron2")
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text('__version__ = "0.6-editable"\n')
    (folder / "_C.py").write_text("")
    mapping = "{'detectron2': 'd2_code'}" if style == "finder" else "{'': 'src'}"
    (source / "setup.py").write_text(
        f"from setuptools import setup\nsetup(name='detectron2', version='0.6', packages=['detectron2'], package_dir={mapping})\n"
    )
    if style == "finder":
        (source / "pyproject.toml").write_text(
            '[build-system]\nrequires = ["setuptools>=64"]\nbuild-backend = "setuptools.build_meta"\n'
        )
    pip = [python, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "setuptools>=64,<81", "wheel"], check=True, capture_output=True)
    mode = ["--no-build-isolation"] if style == "finder" else ["--no-use-pep517"]
    result = subprocess.run([*pip, "install", *mode, "-e", str(source)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    installed = os.listdir(site)
    if style == "finder":
        assert any(n.startswith("__editable__") and n.endswith("_finder.py") for n in installed), installed
    else:
        assert "detectron2.egg-link" in installed and "easy-install.pth" in installed, installed
    return python, folder / "__init__.py"


@pytest.mark.parametrize("style", ["finder", "egg-link"])
def test_an_editable_official_detectron2_in_a_venv_is_seen_by_the_created_venv(tmp_path, style):
    python, module = _editable_detectron2(tmp_path, style)
    ours = tmp_path / "ours"
    detected = _run("--detect-only", PYTHON=python, VENV=str(ours))
    assert f"official Detectron2 found with {python}: {module}" in detected.stdout, detected.stdout + detected.stderr
    assert _run("--venv-only", PYTHON=python, VENV=str(ours)).returncode == 0
    found = subprocess.run(
        [str(ours / "bin" / "python"), "-c", "import detectron2._C, detectron2; print(detectron2.__file__)"],
        capture_output=True,
        text=True,
    )
    assert found.stdout.strip() == str(module), found.stderr
