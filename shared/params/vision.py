"""Parameter schemas of the tasks on the vision queue."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from shared.params.base import TaskParams


class ImageClassificationParams(TaskParams):
    """As ``pipeline("image-classification")`` takes them."""

    top_k: int = Field(5, ge=1, le=1000, description="Labels per image, best first.")
    function_to_apply: Literal["default", "sigmoid", "softmax", "none"] = "default"


class ObjectDetectionParams(TaskParams):
    """As ``pipeline("object-detection")`` takes them."""

    threshold: float = Field(0.5, ge=0, le=1, description="Lowest score kept.")


class ImageSegmentationParams(TaskParams):
    """As ``pipeline("image-segmentation")`` takes them."""

    subtask: Literal["semantic", "instance", "panoptic"] | None = Field(
        None, description="Default: the first the model supports of panoptic, instance, semantic."
    )
    threshold: float = Field(0.9, ge=0, le=1, description="Lowest mask score kept.")
    mask_threshold: float = Field(0.5, ge=0, le=1)
    overlap_mask_area_threshold: float = Field(0.5, ge=0, le=1)
