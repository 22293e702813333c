"""Types and geometry shared by the data and the models (in the spirit of ``detectron2.structures``):
LSNet's landmark schema, the landmarks of an instance (extreme points, contour points) and the
targets written into ``Instances``, and instance outlines as polygons."""

from .landmark_schema import TASK_LANDMARK_SETS, LandmarkSet, landmark_sets, landmark_sets_from_config
from .landmark_targets import add_landmark_targets
from .landmarks import contour_landmarks, extreme_points, flip_contour, flip_extreme_points, sample_contour
from .polygons import mask_to_polygons, polygons_extent

__all__ = [k for k in globals().keys() if not k.startswith("_")]
