"""Test set-up: synthetic data goes to a fresh temporary cache, and train_net.py is importable."""

import os
import sys
import tempfile

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
sys.path.insert(0, os.path.join(REPO_ROOT, "tools"))  # the tools are tested through their main()
sys.path.insert(0, os.path.join(REPO_ROOT, "tools", "experiments"))  # and the experiment runners
sys.path.insert(0, os.path.join(REPO_ROOT, "dev"))  # and the developer diagnostics
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # tiny_datasets
# Before iou_aware is imported: the default datasets register their files under this cache.
os.environ["IOU_AWARE_DATA"] = tempfile.mkdtemp(prefix="iou_aware_test_data_")

import pytest  # noqa: E402
import torch  # noqa: E402

import iou_aware  # noqa: E402

# An editable install of another clone would test that clone's code: fail before collecting.
_PACKAGE_DIR = os.path.join(REPO_ROOT, "projects", "iou_aware")
if os.path.realpath(os.path.dirname(iou_aware.__file__)) != os.path.realpath(_PACKAGE_DIR):
    raise pytest.UsageError(
        f"iou_aware is imported from {os.path.dirname(iou_aware.__file__)}, not from this checkout ({_PACKAGE_DIR}): "
        "run `make install` here (or put this checkout's projects/ first on PYTHONPATH)."
    )

from tiny_datasets import TINY_DATASETS, register_tiny_datasets  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))

register_tiny_datasets()
__all__ = ["TINY_DATASETS"]


@pytest.fixture(scope="session")
def repo_root():
    return REPO_ROOT
