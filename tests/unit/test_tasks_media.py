"""The vision and audio queues' tasks: each handler answers as its transformers pipeline does.

Images go in as base64 PNG, JPEG or WebP; audio as base64 WAV, FLAC, OGG or
MP3. Segmentation masks come back as PNGs that decode to the pipeline's masks.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from services.worker.resample import resample
from services.worker.tiny import sample_media
from shared.errors import InvalidInput, InvalidParameter
from tests.references import close, decode_audio, mask_array, reference
from tests.unit.conftest import TaskRunner

PNG = sample_media.inline(sample_media.image_bytes(), "a.png")
JPEG = sample_media.inline(sample_media.image_bytes(image_format="JPEG", size=(80, 60)), "b.jpg")
WEBP = sample_media.inline(sample_media.image_bytes(image_format="WEBP", size=(40, 40)), "c.webp")
WAV = sample_media.inline(sample_media.audio_bytes(seconds=1.0), "a.wav")
FLAC = sample_media.inline(
    sample_media.audio_bytes(seconds=0.6, audio_format="FLAC", subtype="PCM_16"), "b.flac"
)
LONG_WAV = sample_media.inline(sample_media.audio_bytes(seconds=3.0), "long.wav")

CASES: list[tuple[str, Any, dict[str, Any]]] = [
    ("image-classification", PNG, {}),
    ("image-classification", [PNG, JPEG, WEBP], {"top_k": 2}),
    ("image-classification", JPEG, {"function_to_apply": "sigmoid", "top_k": 1}),
    ("object-detection", PNG, {}),
    ("object-detection", [PNG, JPEG], {"threshold": 0.0}),
    ("object-detection", WEBP, {"threshold": 0.45}),
    ("image-segmentation", PNG, {}),
    ("image-segmentation", [PNG, WEBP], {"threshold": 0.0, "subtask": "semantic"}),
    ("automatic-speech-recognition", WAV, {}),
    ("automatic-speech-recognition", [WAV, FLAC], {}),
    ("automatic-speech-recognition", WAV, {"return_timestamps": "char"}),
    ("automatic-speech-recognition", FLAC, {"return_timestamps": "word"}),
    (
        "automatic-speech-recognition",
        LONG_WAV,
        {"chunk_length_s": 1.0, "stride_length_s": 0.2, "return_timestamps": "word"},
    ),
    ("audio-classification", WAV, {}),
    ("audio-classification", [WAV, FLAC], {"top_k": 2, "function_to_apply": "sigmoid"}),
]


@pytest.mark.parametrize(("task", "inputs", "params"), CASES)
def test_equals_the_pipeline(
    run_task: TaskRunner, task: str, inputs: Any, params: dict[str, Any]
) -> None:
    got = run_task(task, inputs, params)
    want = reference(task, run_task.model_dir(task), inputs, run_task.effective(task, params))
    assert close(got, want), f"{got!r}\n!=\n{want!r}"


def test_detections_are_json_objects(run_task: TaskRunner) -> None:
    detections = run_task("object-detection", PNG, {"threshold": 0.0})
    assert detections, "threshold 0 keeps every detection"
    for detection in detections:
        assert set(detection) == {"score", "label", "box"}
        assert set(detection["box"]) == {"xmin", "ymin", "xmax", "ymax"}
        assert all(type(v) is int for v in detection["box"].values())
        assert type(detection["score"]) is float
    assert all(d["score"] >= 0.45 for d in run_task("object-detection", PNG, {"threshold": 0.45}))


def test_masks_are_png_the_size_of_the_image(run_task: TaskRunner) -> None:
    segments = run_task("image-segmentation", JPEG, {"threshold": 0.0})
    assert segments
    union = np.zeros((60, 80), dtype=bool)
    for segment in segments:
        assert base64.b64decode(segment["mask"]).startswith(b"\x89PNG")
        mask = mask_array(segment["mask"])
        assert mask.shape == (60, 80) and set(np.unique(mask)) <= {0, 255}
        union |= mask == 255
    assert union.all(), "semantic segments cover the image"


def test_audio_at_another_rate_is_resampled(run_task: TaskRunner) -> None:
    """A 22.05 kHz clip gives the pipeline's answer for that clip resampled to 16 kHz."""
    rate = 22_050
    clip = sample_media.inline(sample_media.audio_bytes(rate=rate), "c.wav")
    resampled = resample(sample_media.tone(rate=rate), rate, 16_000)
    encoded = sample_media.inline(_wav(resampled), "r.wav")
    for task in ("automatic-speech-recognition", "audio-classification"):
        got = run_task(task, clip, {})
        want = reference(task, run_task.model_dir(task), encoded, run_task.effective(task, {}))
        assert close(got, want), task


def test_stereo_is_mixed_to_mono(run_task: TaskRunner) -> None:
    import io

    import soundfile

    mono = sample_media.tone()
    buffer = io.BytesIO()
    soundfile.write(buffer, np.stack([mono, mono], axis=1), 16_000, format="WAV", subtype="FLOAT")
    stereo = sample_media.inline(buffer.getvalue(), "stereo.wav")
    assert run_task("audio-classification", stereo, {}) == run_task("audio-classification", WAV, {})
    assert np.array_equal(decode_audio(WAV), mono)


def _wav(samples: Any) -> bytes:
    import io

    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, samples, 16_000, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


CORRUPT = {"base64": base64.b64encode(b"this is not an image").decode()}
TRUNCATED_PNG = {"base64": base64.b64encode(sample_media.image_bytes()[:200]).decode()}
GIF = {"base64": base64.b64encode(b"GIF89a" + b"\x00" * 32).decode()}
NOT_AUDIO = {"base64": base64.b64encode(b"RIFF....WAVEfmt garbage" * 4).decode()}


@pytest.mark.parametrize(
    ("task", "inputs", "params", "error", "fragment"),
    [
        ("image-classification", CORRUPT, {}, InvalidInput, "not an image pipeq reads"),
        ("image-classification", TRUNCATED_PNG, {}, InvalidInput, "the image does not decode"),
        ("image-classification", GIF, {}, InvalidInput, "PNG, JPEG, WEBP"),
        ("image-classification", {"base64": "%%%"}, {}, InvalidInput, "not valid base64"),
        ("image-classification", {"base64": ""}, {}, InvalidInput, "inputs.base64: empty"),
        ("image-classification", "https://x/cat.png", {}, InvalidInput, "URLs are not fetched"),
        ("image-classification", {"url": "https://x"}, {}, InvalidInput, "URLs are not fetched"),
        (
            "image-classification",
            {"file": "a", "base64": "b"},
            {},
            InvalidInput,
            "expected the keys",
        ),
        ("image-classification", [], {}, InvalidInput, "the list of images is empty"),
        ("image-classification", [PNG, 7], {}, InvalidInput, "inputs[1]: expected"),
        ("image-classification", PNG, {"top_k": 0}, InvalidParameter, "top_k"),
        ("object-detection", PNG, {"threshold": 1.5}, InvalidParameter, "'threshold'"),
        ("object-detection", [PNG, CORRUPT], {}, InvalidInput, "inputs[1]"),
        ("image-segmentation", PNG, {"subtask": "cubist"}, InvalidParameter, "'semantic'"),
        ("image-segmentation", PNG, {"mask_threshold": -0.1}, InvalidParameter, "mask_threshold"),
        ("automatic-speech-recognition", NOT_AUDIO, {}, InvalidInput, "the audio does not decode"),
        ("automatic-speech-recognition", PNG, {}, InvalidInput, "the audio does not decode"),
        (
            "automatic-speech-recognition",
            WAV,
            {"return_timestamps": True},
            InvalidParameter,
            "'char'",
        ),
        ("automatic-speech-recognition", WAV, {"max_new_tokens": 5}, InvalidParameter, "Whisper"),
        (
            "automatic-speech-recognition",
            WAV,
            {"chunk_length_s": 1.0, "stride_length_s": 0.5},
            InvalidParameter,
            "< chunk_length_s / 2",
        ),
        ("automatic-speech-recognition", WAV, {"stride_length_s": 0.1}, InvalidParameter, "needs"),
        ("audio-classification", NOT_AUDIO, {}, InvalidInput, "does not decode"),
        ("audio-classification", WAV, {"function_to_apply": "max"}, InvalidParameter, "softmax"),
    ],
)
def test_bad_input_is_refused_clearly(
    run_task: TaskRunner,
    task: str,
    inputs: Any,
    params: dict[str, Any],
    error: type[Exception],
    fragment: str,
) -> None:
    with pytest.raises(error, match=re.escape(fragment)):
        run_task(task, inputs, params)


def test_inputs_from_the_blob_folder(
    run_task: TaskRunner, embedded_env: Path, tmp_path: Path
) -> None:
    blobs = embedded_env / "blobs"
    (blobs / "cats").mkdir(parents=True)
    (blobs / "cats" / "a.png").write_bytes(base64.b64decode(PNG["base64"]))
    (blobs / "a.wav").write_bytes(base64.b64decode(WAV["base64"]))
    outside = tmp_path / "secret.png"
    outside.write_bytes(base64.b64decode(PNG["base64"]))
    (blobs / "link.png").symlink_to(outside)

    assert run_task("image-classification", {"file": "cats/a.png"}, {}) == run_task(
        "image-classification", PNG, {}
    )
    assert run_task("audio-classification", {"file": "a.wav"}, {}) == run_task(
        "audio-classification", WAV, {}
    )
    for reference_path, fragment in [
        ("../secret.png", "may not contain '..'"),
        ("cats/../../secret.png", "may not contain '..'"),
        (str(outside), "is absolute"),
        ("link.png", "leads outside the blob folder"),
        ("cats/missing.png", "is not a file"),
        ("cats", "is not a file"),
    ]:
        with pytest.raises(InvalidInput, match=re.escape(fragment)):
            run_task("image-classification", {"file": reference_path}, {})
