"""Small synthetic datasets for end-to-end tests, registered the same way as the default ones
(by conftest.py, and by helper scripts the tests run in subprocesses)."""

from iou_aware.data import SyntheticDatasetSpec, register_synthetic_dataset

TINY_DATASETS = {
    "shapes_tiny_train": SyntheticDatasetSpec("shapes", num_images=16, seed=100, height=128, width=128),
    "shapes_tiny_val": SyntheticDatasetSpec("shapes", num_images=8, seed=101, height=128, width=128),
    "stickmen_tiny_train": SyntheticDatasetSpec("stickmen", num_images=16, seed=103, height=128, width=128),
    "stickmen_tiny_val": SyntheticDatasetSpec("stickmen", num_images=8, seed=102, height=128, width=128),
}


def register_tiny_datasets() -> None:
    for name, spec in TINY_DATASETS.items():
        register_synthetic_dataset(name, spec)
