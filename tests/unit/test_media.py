"""Media inputs: formats that decode, limits, and the resampler against known signals."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import numpy as np
import pytest

from services.worker.blobs import payload_bytes
from services.worker.media import decode_audio, decode_image
from services.worker.resample import resample
from services.worker.tiny import sample_media
from shared.errors import InvalidInput


def _sine(frequency: float, rate: int, seconds: float = 1.0) -> np.ndarray:
    return np.sin(2 * np.pi * frequency * np.arange(int(rate * seconds)) / rate)


@pytest.mark.parametrize(
    ("source", "target", "frequency"),
    [(44_100, 16_000, 440), (48_000, 16_000, 3_000), (8_000, 16_000, 440), (22_050, 16_000, 5_000)],
)
def test_resampling_keeps_a_tone(source: int, target: int, frequency: float) -> None:
    out = resample(_sine(frequency, source), source, target)
    assert out.dtype == np.float32 and out.size == target
    middle = slice(200, target - 200)  # away from the zero padding at the edges
    expected = _sine(frequency, target)
    assert np.abs(out[middle] - expected[middle]).max() < 1e-3


def test_resampling_down_removes_what_the_new_rate_cannot_hold() -> None:
    out = resample(_sine(10_000, 44_100), 44_100, 16_000)  # above 8 kHz, the new Nyquist
    assert np.sqrt(np.mean(out[200:-200] ** 2)) < 1e-3


def test_resampling_edge_cases() -> None:
    same = np.arange(5, dtype=np.float32)
    assert np.array_equal(resample(same, 16_000, 16_000), same)
    assert resample(np.zeros(0), 8_000, 16_000).size == 0
    assert resample(np.ones(10), 16_001, 16_000).size == 10
    with pytest.raises(ValueError, match="mono"):
        resample(np.zeros((2, 2)), 8_000, 16_000)


@pytest.mark.parametrize(
    ("audio_format", "subtype", "tolerance"),
    [
        ("WAV", "PCM_16", 1e-4),
        ("FLAC", "PCM_24", 1e-6),
        ("OGG", "VORBIS", 0.1),
        ("OGG", "OPUS", 0.1),
        ("MP3", "MPEG_LAYER_III", 0.1),
    ],
)
def test_audio_formats_decode(audio_format: str, subtype: str, tolerance: float) -> None:
    tone = sample_media.tone(rate=48_000, seconds=0.5)
    data = sample_media.audio_bytes(
        rate=48_000, seconds=0.5, audio_format=audio_format, subtype=subtype
    )
    audio = decode_audio({"base64": base64.b64encode(data).decode()}, where="inputs")
    assert audio.rate == 48_000 and audio.samples.dtype == np.float32
    assert abs(audio.samples.size - tone.size) < 0.1 * tone.size  # codecs pad a little
    if tolerance < 0.01:
        assert np.abs(audio.samples - tone).max() < tolerance
    else:  # lossy: the waveform survives, not every sample
        n = min(audio.samples.size, tone.size)
        lag = int(np.argmax(np.correlate(audio.samples[:n], tone[:2000], "valid")[:4000]))
        aligned = audio.samples[lag : lag + 10_000]
        assert np.corrcoef(aligned, tone[: aligned.size])[0, 1] > 0.9


@pytest.mark.parametrize("image_format", ["PNG", "JPEG", "WEBP"])
def test_image_formats_decode(image_format: str) -> None:
    data = sample_media.image_bytes(image_format=image_format, size=(30, 20))
    image = decode_image({"base64": base64.b64encode(data).decode()}, where="inputs")
    assert image.mode == "RGB" and image.size == (30, 20)


def test_exif_orientation_is_applied() -> None:
    from PIL import Image

    picture = Image.new("RGB", (30, 20), "red")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", exif=exif)
    image = decode_image({"base64": base64.b64encode(buffer.getvalue()).decode()}, where="x")
    assert image.size == (20, 30)


def test_an_image_too_large_is_refused_before_it_decodes() -> None:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("1", (9000, 6000)).save(buffer, format="PNG")  # small file, 54 M pixels
    with pytest.raises(InvalidInput, match="9000x6000 pixels; the limit is 50000000"):
        decode_image({"base64": base64.b64encode(buffer.getvalue()).decode()}, where="inputs")


def test_silence_of_no_samples_is_refused() -> None:
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, np.zeros(0, dtype=np.float32), 16_000, format="WAV")
    with pytest.raises(InvalidInput, match="the audio has no samples"):
        decode_audio({"base64": base64.b64encode(buffer.getvalue()).decode()}, where="inputs")


def test_payloads(embedded_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.settings import get_settings

    data = b"\x00\x01pipeq"
    encoded = base64.b64encode(data).decode()
    assert payload_bytes({"base64": encoded, "filename": "x.bin"}, where="inputs") == data
    assert payload_bytes({"base64": f"data:image/png;base64,{encoded}"}, where="inputs") == data
    blobs = embedded_env / "blobs"
    blobs.mkdir(parents=True)
    (blobs / "big.bin").write_bytes(b"x" * 2048)
    (blobs / "empty.bin").write_bytes(b"")
    monkeypatch.setenv("PIPEQ_MAX_FILE_BYTES", "1024")
    get_settings.cache_clear()
    for item, fragment in [
        ({"file": "big.bin"}, "is 2048 bytes; the limit is 1024"),
        ({"file": "empty.bin"}, "is empty"),
        ({"file": ""}, "expected a relative path"),
        ({"file": 3}, "expected a relative path"),
        ({"base64": 3}, "inputs.base64: expected a string"),
        ({}, "got none"),
    ]:
        with pytest.raises(InvalidInput, match=re.escape(fragment)):
            payload_bytes(item, where="inputs")
