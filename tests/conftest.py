"""Test set-up: synthetic data goes to a fresh temporary cache, and train_net.py is importable."""
import os
import sys
import tempfile

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
sys.path.insert(0, os.path.join(REPO_ROOT, "tools"))  # the tools are tested through their main()
# Before iou_aware is imported: the default datasets register their files under this cache.
os.environ["IOU_AWARE_DATA"] = tempfile.mkdtemp(prefix="iou_aware_test_data_")

import pytest  # noqa: E402
import torch  # noqa: E402

from iou_aware.data import SyntheticDatasetSpec, register_synthetic_dataset  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))

# Small datasets for end-to-end tests: registered the same way as the default ones.
TINY_DATASETS = {
    "shapes_tiny_train": SyntheticDatasetSpec("shapes", num_images=16, seed=100, height=128, width=128),
    "shapes_tiny_val": SyntheticDatasetSpec("shapes", num_images=8, seed=101, height=128, width=128),
    "stickmen_tiny_train": SyntheticDatasetSpec("stickmen", num_images=16, seed=103, height=128, width=128),
    "stickmen_tiny_val": SyntheticDatasetSpec("stickmen", num_images=8, seed=102, height=128, width=128),
}
for _name, _spec in TINY_DATASETS.items():
    register_synthetic_dataset(_name, _spec)


@pytest.fixture(scope="session")
def repo_root():
    return REPO_ROOT
