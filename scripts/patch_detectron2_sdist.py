"""Prepare the unpacked ``pb1-detectron2==0.6`` sdist for a pure-Python install.

Usage: python scripts/patch_detectron2_sdist.py <unpacked sdist folder>

1. ``setup.py``: no C++ extension (the sdist has no ``csrc``) and the model-zoo configs shipped as
   package data by glob, so that ``detectron2.model_zoo.get_config_file`` finds them.
2. ``detectron2/_C.py``: the placeholder that explains how to get the compiled ops.
3. ``detectron2/export/__init__.py``: caffe2 (which torch no longer ships) imported only if present,
   as in the official master branch, so that ``TracingAdapter`` can be imported.
4. The PASCAL VOC loader and evaluator: the NumPy aliases removed in NumPy 1.24 (``np.str``,
   ``np.bool``) replaced by the builtins, as in the official master branch
   (:data:`NUMPY_ALIAS_FIXES`; :func:`patch_numpy_aliases` also patches an installed copy).
"""

import os
import shutil
import sys

# File (relative to the folder holding the ``detectron2`` package) -> (old, new) replacements, each
# of every occurrence (the evaluator's alias appears in a comment too).
NUMPY_ALIAS_FIXES = {
    "detectron2/data/datasets/pascal_voc.py": [("np.loadtxt(f, dtype=np.str)", "np.loadtxt(f, dtype=str)")],
    "detectron2/evaluation/pascal_voc_evaluation.py": [(".astype(np.bool)", ".astype(bool)")],
}


def fix_numpy_aliases(text: str, relative_path: str) -> str:
    """``text`` of the file ``relative_path`` (a key of :data:`NUMPY_ALIAS_FIXES`) with the
    builtins in place of the removed NumPy aliases. A text already fixed is returned unchanged."""
    for old, new in NUMPY_ALIAS_FIXES[relative_path]:
        if old not in text and new not in text:
            raise SystemExit(f"patch_detectron2_sdist: cannot patch {relative_path}: neither {old!r} nor {new!r} found")
        text = text.replace(old, new)
    return text


def patch_numpy_aliases(root: str) -> None:
    """Apply :func:`fix_numpy_aliases` to the files under ``root``: an unpacked sdist, or the
    site-packages folder of an installed Detectron2 0.6."""
    for relative_path in NUMPY_ALIAS_FIXES:
        path = os.path.join(root, relative_path)
        with open(path) as f:
            text = f.read()
        fixed = fix_numpy_aliases(text, relative_path)
        if fixed != text:
            with open(path, "w") as f:
                f.write(fixed)


def _replace_once(text: str, old: str, new: str, what: str) -> str:
    if text.count(old) != 1:
        raise SystemExit(f"patch_detectron2_sdist: cannot patch {what}: expected one {old!r}")
    return text.replace(old, new)


def patch(src: str) -> None:
    setup_py = os.path.join(src, "setup.py")
    with open(setup_py) as f:
        text = f.read()
    text = _replace_once(text, "ext_modules=get_extensions(),", "ext_modules=[],", "setup.py")
    text = _replace_once(
        text,
        'package_data={"detectron2.model_zoo": get_model_zoo_configs()},',
        'package_data={"detectron2.model_zoo": ["configs/**/*.yaml", "configs/**/*.py"]},',
        "setup.py",
    )
    with open(setup_py, "w") as f:
        f.write(text)

    here = os.path.dirname(os.path.abspath(__file__))
    shutil.copyfile(os.path.join(here, "detectron2_C_placeholder.py"), os.path.join(src, "detectron2", "_C.py"))

    export_init = os.path.join(src, "detectron2", "export", "__init__.py")
    with open(export_init) as f:
        text = f.read()
    lines = text.splitlines(keepends=True)
    patched = []
    for line in lines:
        if line.startswith("from .api import"):
            patched.append("try:\n    " + line + "except ImportError:  # caffe2 is no longer in torch\n    pass\n")
        else:
            patched.append(line)
    with open(export_init, "w") as f:
        f.write("".join(patched))

    patch_numpy_aliases(src)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    patch(sys.argv[1])
