"""Sample images and sounds for the tiny vision and audio models, made in code.

They are the demo's inputs and the tests': small, deterministic, and sent the
way a producer sends media (``{"base64": ..., "filename": ...}``).
"""

from __future__ import annotations

import base64
import io
from typing import Any


def image(*, size: tuple[int, int] = (64, 48)) -> Any:
    """A few coloured shapes on a light background (a PIL image)."""
    from PIL import Image, ImageDraw

    picture = Image.new("RGB", size, (235, 235, 225))
    draw = ImageDraw.Draw(picture)
    width, height = size
    draw.rectangle((width // 8, height // 6, width // 2, height // 2), fill=(200, 40, 40))
    draw.ellipse((width // 2, height // 3, width - 4, height - 4), fill=(30, 90, 200))
    draw.line((0, height - 1, width - 1, 0), fill=(20, 20, 20), width=2)
    return picture


def image_bytes(*, image_format: str = "PNG", size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    image(size=size).save(buffer, format=image_format)
    return buffer.getvalue()


def tone(*, rate: int = 16_000, seconds: float = 1.0) -> Any:
    """A rising chirp with a little noise: float32 mono samples at ``rate``."""
    import numpy as np

    time = np.arange(int(rate * seconds)) / rate
    chirp = 0.4 * np.sin(2 * np.pi * (220 + 300 * time) * time)
    noise = 0.02 * np.random.default_rng(0).standard_normal(time.size)
    return (chirp + noise).astype(np.float32)


def audio_bytes(
    *, rate: int = 16_000, seconds: float = 1.0, audio_format: str = "WAV", subtype: str = "FLOAT"
) -> bytes:
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(
        buffer, tone(rate=rate, seconds=seconds), rate, format=audio_format, subtype=subtype
    )
    return buffer.getvalue()


def inline(data: bytes, filename: str) -> dict[str, str]:
    """``data`` as a job input, the way ``pipeq submit --file`` sends it."""
    return {"base64": base64.b64encode(data).decode("ascii"), "filename": filename}
