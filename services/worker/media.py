"""Image and audio inputs, from job JSON to what a model's processor takes.

A job sends one input or a list of them (each as :mod:`services.worker.blobs`
describes); handlers call :func:`image_items` or :func:`audio_items` in their
``decode`` step, so a corrupt file fails its own job before any model runs.

- Images: PNG, JPEG or WebP, decoded fully by Pillow (a truncated file fails
  here, not in the model), EXIF orientation applied, converted to RGB (as
  ``transformers.image_utils.load_image`` does). Oversized images are refused
  before they are decoded.
- Audio: WAV, FLAC, OGG (Vorbis, Opus) or MP3, decoded by soundfile
  (libsndfile) to float32 and mixed down to mono. Resampling to the model's
  rate happens in ``predict`` (:mod:`services.worker.resample`), where the
  model is known.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from services.worker.blobs import describe, payload_bytes
from shared.errors import InvalidInput
from shared.jobs import MAX_ITEMS

IMAGE_FORMATS = ("PNG", "JPEG", "WEBP")
MAX_IMAGE_PIXELS = 50_000_000


@dataclass(frozen=True)
class Audio:
    """Decoded audio: mono float32 samples at their own rate."""

    samples: npt.NDArray[np.float32]
    rate: int

    @property
    def seconds(self) -> float:
        return self.samples.size / self.rate


def media_items(inputs: Any, what: str) -> tuple[list[Any], bool]:
    """A lone input or a non-empty list of them: ``(items, batched)``."""
    batched = isinstance(inputs, list)
    items = inputs if batched else [inputs]
    if batched and not items:
        raise InvalidInput(f"inputs: the list of {what}s is empty")
    if len(items) > MAX_ITEMS:
        raise InvalidInput(f"inputs: {len(items)} {what}s in one job; the limit is {MAX_ITEMS}")
    return items, batched


def where(index: int, batched: bool) -> str:
    return f"inputs[{index}]" if batched else "inputs"


def image_items(inputs: Any) -> tuple[list[Any], bool]:
    """Every image of a job, decoded to RGB PIL images."""
    items, batched = media_items(inputs, "image")
    return [decode_image(item, where=where(i, batched)) for i, item in enumerate(items)], batched


def audio_items(inputs: Any) -> tuple[list[Audio], bool]:
    """Every audio clip of a job, decoded to mono float32."""
    items, batched = media_items(inputs, "audio clip")
    return [decode_audio(item, where=where(i, batched)) for i, item in enumerate(items)], batched


def decode_image(item: Any, *, where: str) -> Any:
    from PIL import Image, ImageOps, UnidentifiedImageError

    data = payload_bytes(item, where=where)
    name = describe(item)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
            if opened.width * opened.height > MAX_IMAGE_PIXELS:
                raise InvalidInput(
                    f"{where}{name}: image of {opened.width}x{opened.height} pixels; "
                    f"the limit is {MAX_IMAGE_PIXELS} pixels"
                )
            opened.load()
            return ImageOps.exif_transpose(opened).convert("RGB")
    except UnidentifiedImageError:
        raise InvalidInput(
            f"{where}{name}: not an image pipeq reads ({', '.join(IMAGE_FORMATS)})"
        ) from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombWarning) as exc:
        raise InvalidInput(f"{where}{name}: the image does not decode ({exc})") from None


def decode_audio(item: Any, *, where: str) -> Audio:
    import soundfile

    data = payload_bytes(item, where=where)
    name = describe(item)
    try:
        samples, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise InvalidInput(
            f"{where}{name}: the audio does not decode (WAV, FLAC, OGG or MP3 expected: {exc})"
        ) from None
    if samples.shape[0] == 0:
        raise InvalidInput(f"{where}{name}: the audio has no samples")
    mono = samples.mean(axis=1, dtype=np.float32) if samples.shape[1] > 1 else samples[:, 0]
    if not np.isfinite(mono).all():
        raise InvalidInput(f"{where}{name}: the audio contains NaN or infinite samples")
    return Audio(samples=np.ascontiguousarray(mono), rate=int(rate))
