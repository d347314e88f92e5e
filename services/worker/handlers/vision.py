"""The vision queue's tasks, on the transformers pipelines.

Inputs are images (:mod:`services.worker.media`), decoded in ``decode`` so a
corrupt one fails its own job. Results are what the pipelines answer, made
JSON-safe:

- image-classification: per image, ``top_k`` of ``{"label", "score"}``;
- object-detection: per image, ``{"score", "label", "box": {"xmin", "ymin",
  "xmax", "ymax"}}`` (pixels) for each detection scoring at least ``threshold``;
- image-segmentation: per image, ``{"score", "label", "mask"}`` where ``mask``
  is a base64 PNG, one channel the size of the image, 255 inside the
  segment and 0 outside (``score`` is null for semantic segmentation).
"""

from __future__ import annotations

import base64
import io
from typing import Any

from services.worker.handlers.base import Loaded
from services.worker.handlers.pipelines import (
    PipelineHandler,
    auto_class_for,
    build_pipeline,
    model_call,
)
from services.worker.loading import load_pretrained, load_processor
from services.worker.media import image_items
from shared.params.vision import (
    ImageClassificationParams,
    ImageSegmentationParams,
    ObjectDetectionParams,
)
from shared.registry import ModelSpec

#: Segmentation heads, in the order the pipeline prefers them.
SEGMENTATION_HEADS = ("UNIVERSAL_SEGMENTATION", "IMAGE_SEGMENTATION", "SEMANTIC_SEGMENTATION")


class ImageClassification(PipelineHandler[ImageClassificationParams]):
    task = "image-classification"
    model_class = "AutoModelForImageClassification"
    processor_class = "AutoImageProcessor"
    processor_arg = "image_processor"

    def decode(self, inputs: Any, params: ImageClassificationParams) -> tuple[list[Any], bool]:
        return image_items(inputs)

    def pipeline_kwargs(self, loaded: Loaded, params: ImageClassificationParams) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"top_k": params.top_k}
        if params.function_to_apply != "default":
            kwargs["function_to_apply"] = params.function_to_apply
        return kwargs


class ObjectDetection(PipelineHandler[ObjectDetectionParams]):
    task = "object-detection"
    model_class = "AutoModelForObjectDetection"
    processor_class = "AutoImageProcessor"
    processor_arg = "image_processor"

    def decode(self, inputs: Any, params: ObjectDetectionParams) -> tuple[list[Any], bool]:
        return image_items(inputs)

    def pipeline_kwargs(self, loaded: Loaded, params: ObjectDetectionParams) -> dict[str, Any]:
        return {"threshold": params.threshold}


class ImageSegmentation(PipelineHandler[ImageSegmentationParams]):
    task = "image-segmentation"
    processor_class = "AutoImageProcessor"
    processor_arg = "image_processor"

    def load(self, spec: ModelSpec, device: str) -> Loaded:
        from transformers import AutoConfig, AutoImageProcessor

        config = load_processor(AutoConfig, spec)
        model = load_pretrained(auto_class_for(config, SEGMENTATION_HEADS), spec, device)
        processor = load_processor(AutoImageProcessor, spec)
        pipe = build_pipeline(self.task, model, device, image_processor=processor)
        return Loaded(spec=spec, model=model, processor=processor, pipeline=pipe, device=device)

    def decode(self, inputs: Any, params: ImageSegmentationParams) -> tuple[list[Any], bool]:
        return image_items(inputs)

    def pipeline_kwargs(self, loaded: Loaded, params: ImageSegmentationParams) -> dict[str, Any]:
        return {
            "threshold": params.threshold,
            "mask_threshold": params.mask_threshold,
            "overlap_mask_area_threshold": params.overlap_mask_area_threshold,
            **params.given("subtask"),
        }

    def predict(
        self, loaded: Loaded, items: list[Any], params: ImageSegmentationParams
    ) -> list[Any]:
        kwargs = self.pipeline_kwargs(loaded, params)
        with model_call(loaded):
            results = loaded.pipeline(list(items), batch_size=len(items), **kwargs)
        if len(items) == 1 and results and isinstance(results[0], dict):
            results = [results]  # one image: the pipeline answers its segments unwrapped
        return [
            [{**segment, "mask": png_base64(segment["mask"])} for segment in segments]
            for segments in results
        ]


def png_base64(image: Any) -> str:
    """A PIL image as base64-encoded PNG bytes."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")
