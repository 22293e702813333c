"""Test set-up: synthetic data goes to a fresh temporary cache, and train_net.py is importable."""
import os
import sys
import tempfile

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
sys.path.insert(0, os.path.join(REPO_ROOT, "tools"))  # the tools are tested through their main()
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # tiny_datasets
# Before iou_aware is imported: the default datasets register their files under this cache.
os.environ["IOU_AWARE_DATA"] = tempfile.mkdtemp(prefix="iou_aware_test_data_")

import pytest  # noqa: E402
import torch  # noqa: E402

from tiny_datasets import TINY_DATASETS, register_tiny_datasets  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))

register_tiny_datasets()
__all__ = ["TINY_DATASETS"]


@pytest.fixture(scope="session")
def repo_root():
    return REPO_ROOT
