"""Datasets: the synthetic ``shapes`` and ``stickmen`` generators and their registration, a user's
COCO files and VOC folders, mappers, annotation checks and landmark targets."""

from ..structures import contour_landmarks, extreme_points, flip_contour, flip_extreme_points, sample_contour
from .dataset_checks import DatasetCheckError, DatasetProblem, check_training_records, find_record_problems
from .mappers import MAPPER_REGISTRY, LandmarkDatasetMapper, build_annotated_test_mapper, build_mapper
from .shapes import SHAPE_CLASSES, render_shapes_image
from .stickmen import render_stickmen_image
from .synthetic import (
    DEFAULT_SYNTHETIC_DATASETS,
    SyntheticDatasetSpec,
    ensure_dataset_files,
    generate_synthetic_dataset,
    register_default_synthetic_datasets,
    register_synthetic_dataset,
    synthetic_cache_root,
)
from .user_datasets import (
    add_register_coco_argument,
    add_register_voc_argument,
    add_user_dataset_arguments,
    keypoint_metadata,
    oks_sigmas_for,
    register_coco_datasets,
    register_user_datasets,
    register_voc_datasets,
)
from .validation import InvalidAnnotationError, ValidatingMapper, check_box_annotations
from .voc import VOCFormatError, check_voc_evaluation_files, find_voc_problems, register_voc_dataset, voc_class_names

__all__ = [k for k in globals().keys() if not k.startswith("_")]
