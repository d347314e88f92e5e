"""Every task through the real shared worker: the job's result is transformers' own answer.

All jobs are submitted at once (the worker serves nlp, vision and audio from one
process), then each result is compared with :func:`tests.references.reference`
computed here, in process, for the same inputs and effective parameters. Bad
jobs fail one by one with a clear message, and the worker goes on.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from services.worker.tiny import sample_media, samples
from shared.client import Client
from shared.jobs import JobView
from shared.registry import load_registry
from shared.settings import Settings
from tests.helpers import WorkerProcess
from tests.references import close, reference

QUESTION = {
    "question": "What is the capital of France?",
    "context": "Paris is the capital of France and Berlin is the capital of Germany.",
}
WAV = sample_media.inline(sample_media.audio_bytes(), "a.wav")
FLAC = sample_media.inline(
    sample_media.audio_bytes(seconds=0.7, audio_format="FLAC", subtype="PCM_16"), "b.flac"
)
PNG = sample_media.inline(sample_media.image_bytes(), "a.png")
JPEG = sample_media.inline(sample_media.image_bytes(image_format="JPEG", size=(50, 70)), "b.jpg")

GOOD: dict[str, tuple[str, Any, dict[str, Any]]] = {
    "generation": ("text-generation", ["Hello world", "The capital of"], {"max_new_tokens": 6}),
    "sampling": ("text-generation", "Hello", {"do_sample": True, "seed": 7, "top_k": 20}),
    "classification": ("text-classification", "I love this movie", {"top_k": 2}),
    "qa": ("question-answering", [QUESTION, QUESTION], {"top_k": 2}),
    "summary": ("summarization", samples()["summarization"][0], {"num_beams": 2}),
    "translation": ("translation", ["I love this movie", "Hello"], {"tgt_lang": "deu_Latn"}),
    "ner": ("token-classification", "My name is Sarah and I live in London.", {}),
    "fill-mask": ("fill-mask", "Paris is the [MASK] of France.", {"top_k": 4}),
    "image": ("image-classification", [PNG, JPEG], {"top_k": 2}),
    "detection": ("object-detection", JPEG, {"threshold": 0.0}),
    "segmentation": ("image-segmentation", PNG, {"threshold": 0.0}),
    "asr": ("automatic-speech-recognition", [WAV, FLAC], {"return_timestamps": "char"}),
    "audio": ("audio-classification", FLAC, {"top_k": 2}),
    "whisper": ("automatic-speech-recognition", WAV, {"return_timestamps": True}),
}
#: Jobs on another model than their task's ``tiny-<task>``.
ALIASES = {"whisper": "tiny-whisper"}
CORRUPT = {"base64": base64.b64encode(b"no image here").decode(), "filename": "x.png"}
NOT_AUDIO = {"base64": base64.b64encode(b"RIFF....WAVE" * 8).decode(), "filename": "x.wav"}
BAD: dict[str, tuple[str, Any, dict[str, Any], str]] = {
    "empty text": ("text-generation", "", {}, "inputs: the text is empty"),
    "too many tokens": ("text-generation", "hi", {"max_new_tokens": 5000}, "<= 1024"),
    "empty in a list": ("text-classification", ["ok", " "], {}, "inputs[1]: the text is empty"),
    "no context": ("question-answering", {"question": "Who?"}, {}, "a question needs a context"),
    "above the model": ("summarization", "hi", {"max_length": 4096}, "<= 128, this model's"),
    "unknown language": ("translation", "hi", {"tgt_lang": "xx_Yyyy"}, "unknown language code"),
    "not a text": ("token-classification", 42, {}, "inputs: expected a text, got int"),
    "no mask": ("fill-mask", "nothing to fill", {}, "no mask token [MASK]"),
    "corrupt image": ("image-classification", CORRUPT, {}, "(x.png): not an image pipeq reads"),
    "dot dot": ("object-detection", {"file": "../secret.png"}, {}, "may not contain '..'"),
    "absolute": ("image-segmentation", {"file": "/etc/hostname"}, {}, "is absolute"),
    "undecodable audio": ("automatic-speech-recognition", NOT_AUDIO, {}, "does not decode"),
    "missing file": ("audio-classification", {"file": "nope.wav"}, {}, "is not a file"),
    "url": ("image-classification", "https://example.com/cat.png", {}, "URLs are not fetched"),
}


@pytest.fixture(scope="module")
def jobs(worker: WorkerProcess, client: Client, settings: Settings) -> dict[str, JobView]:
    """Every job of this module, submitted together, then waited for."""
    blobs = settings.resolved_blob_dir
    (blobs / "pictures").mkdir(parents=True, exist_ok=True)
    (blobs / "pictures" / "shapes.jpg").write_bytes(base64.b64decode(JPEG["base64"]))
    submitted = {
        name: client.submit(task, ALIASES.get(name, f"tiny-{task}"), inputs, params)
        for name, (task, inputs, params) in GOOD.items()
    }
    submitted["from a file"] = client.submit(
        "image-classification", "tiny-image-classification", {"file": "pictures/shapes.jpg"}
    )
    for name, (task, inputs, params, _) in BAD.items():
        submitted[name] = client.submit(task, f"tiny-{task}", inputs, params)
    submitted["after the bad ones"] = client.submit("fill-mask", "tiny-fill-mask", "a [MASK] day")
    return {name: client.wait(job.id, timeout=180) for name, job in submitted.items()}


@pytest.mark.parametrize("name", list(GOOD))
def test_a_job_answers_as_transformers(
    jobs: dict[str, JobView], settings: Settings, name: str
) -> None:
    task, inputs, params = GOOD[name]
    job = jobs[name]
    assert job.state == "SUCCEEDED", job.error
    spec = load_registry(settings.registry_path).get(ALIASES.get(name, f"tiny-{task}"))
    want = reference(task, spec.location, inputs, {**spec.defaults, **params})
    assert close(job.result, want), f"{job.result!r}\n!=\n{want!r}"


def test_an_image_by_file_reference(jobs: dict[str, JobView], settings: Settings) -> None:
    job = jobs["from a file"]
    assert job.state == "SUCCEEDED", job.error
    spec = load_registry(settings.registry_path).get("tiny-image-classification")
    assert close(job.result, reference(job.task, spec.location, JPEG, spec.defaults))


@pytest.mark.parametrize("name", list(BAD))
def test_a_bad_job_fails_alone_with_a_clear_message(
    jobs: dict[str, JobView], worker: WorkerProcess, name: str
) -> None:
    fragment = BAD[name][3]
    job = jobs[name]
    assert job.state == "FAILED" and job.error is not None
    assert job.error.type in {"invalid_input", "invalid_parameter"}, job.error
    assert fragment in job.error.message, job.error.message
    assert worker.alive
    assert jobs["after the bad ones"].state == "SUCCEEDED"
