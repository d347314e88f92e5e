"""Whisper through pipeq's speech-recognition handler, on the tiny random Whisper.

The same checks as the other tasks (the handler answers as the transformers
pipeline does for the same audio and parameters), for what only a
sequence-to-sequence speech model has: generation parameters, segment and word
timestamps, long audio in chunks, and the language token.
"""

from __future__ import annotations

from typing import Any

import pytest

from services.worker.tiny import sample_media, whisper
from shared.errors import InvalidParameter
from tests.references import close, reference
from tests.unit.conftest import TaskRunner

TASK = whisper.TASK
WAV = sample_media.inline(sample_media.audio_bytes(seconds=1.0), "a.wav")
SHORT = sample_media.inline(sample_media.audio_bytes(seconds=0.5), "short.wav")
LONG = sample_media.inline(sample_media.audio_bytes(seconds=4.0), "long.wav")

CASES: list[tuple[Any, dict[str, Any]]] = [
    (WAV, {}),
    ([WAV, SHORT], {"max_new_tokens": 4}),
    (SHORT, {"return_timestamps": True}),
    (WAV, {"return_timestamps": "word"}),
    (WAV, {"num_beams": 2, "language": "en"}),
    (WAV, {"language": "English"}),  # a name, as Whisper takes it
    (LONG, {"chunk_length_s": 2.0, "stride_length_s": 0.4, "return_timestamps": True}),
]


@pytest.mark.parametrize(("inputs", "params"), CASES)
def test_equals_the_pipeline(run_task: TaskRunner, inputs: Any, params: dict[str, Any]) -> None:
    got = run_task(TASK, inputs, params, alias=whisper.ALIAS)
    model_dir = run_task.model_dir(TASK, whisper.ALIAS)
    want = reference(TASK, model_dir, inputs, run_task.effective(TASK, params, whisper.ALIAS))
    assert close(got, want), f"{got!r}\n!=\n{want!r}"


def test_timestamps_come_as_chunks_in_seconds(run_task: TaskRunner) -> None:
    got = run_task(TASK, SHORT, {"return_timestamps": True}, alias=whisper.ALIAS)
    assert got["chunks"], got
    for chunk in got["chunks"]:  # a random model's times: only their form is known
        start, end = chunk["timestamp"]
        assert isinstance(chunk["text"], str), chunk
        assert isinstance(start, float) and (end is None or isinstance(end, float)), chunk


def test_the_model_is_told_apart_from_ctc(run_task: TaskRunner) -> None:
    assert run_task.loaded(TASK, whisper.ALIAS).pipeline.type == "seq2seq_whisper"
    assert run_task.loaded(TASK).pipeline.type == "ctc"


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"return_timestamps": "char"}, "accepts False, True, 'word'"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        # transformers' "Unsupported language" once failed such jobs as the model's fault
        ({"language": "fr"}, r"parameter 'language': this model knows en \(got 'fr'\)"),
    ],
)
def test_bad_parameters_are_refused_clearly(
    run_task: TaskRunner, params: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(InvalidParameter, match=fragment):
        run_task(TASK, WAV, params, alias=whisper.ALIAS)
