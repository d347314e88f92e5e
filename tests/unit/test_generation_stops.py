"""A generating job that should stop (cancelled, past its time limit) ends its ``generate()``
at the next token instead of running to ``max_new_tokens``; a batch ends once all its jobs
should.

Each case runs the task's handler on its tiny model twice, counting the tokens its model's
``generate()`` returned: under a job control that nothing stops (every token it may make),
and under one stopped before the call (one token at most).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from services.worker.batching import BatchControl, _Entry
from services.worker.control import JobControl, cancelled, running
from services.worker.handlers import handler_for
from services.worker.tiny import sample_media, whisper
from tests.unit.conftest import TaskRunner

MAX_NEW_TOKENS = 12
CASES = [
    ("text-generation", None, "The quick brown fox"),
    ("summarization", None, "Paris is the capital of France and Berlin is the capital of Germany."),
    ("translation", None, "I love this movie"),
    (
        whisper.TASK,
        whisper.ALIAS,
        sample_media.inline(sample_media.audio_bytes(seconds=1.0), "a.wav"),
    ),
]


class Generated:
    """Wraps the loaded model's ``generate()``: how many tokens each call added."""

    def __init__(self, model: Any) -> None:
        self.new_tokens: list[int] = []
        self._generate = model.generate

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        out = self._generate(*args, **kwargs)
        sequences = out if hasattr(out, "shape") else out["sequences"]
        prompt = kwargs.get("input_ids", args[0] if args else None)
        start = 0 if prompt is None or self._encoder_decoder else prompt.shape[1]
        self.new_tokens.append(sequences.shape[1] - start)
        return out

    _encoder_decoder = False


@pytest.fixture
def generated(run_task: TaskRunner, request: pytest.FixtureRequest) -> Iterator[Any]:
    def spy(task: str, alias: str | None) -> Generated:
        model = run_task.loaded(task, alias).model
        spy = Generated(model)
        spy._encoder_decoder = bool(model.config.is_encoder_decoder)
        monkeypatch.setattr(model, "generate", spy)
        return spy

    monkeypatch = pytest.MonkeyPatch()
    yield spy
    monkeypatch.undo()


def _run(run_task: TaskRunner, task: str, alias: str | None, inputs: Any, control: Any) -> None:
    handler = handler_for(task)
    params = handler.params(run_task.spec(task, alias), {"max_new_tokens": MAX_NEW_TOKENS})
    items, _batched = handler.decode(inputs, params)
    with running(control):
        handler.predict(run_task.loaded(task, alias), items, params)


def _stopped() -> JobControl:
    control = JobControl("job", "lease")
    control.stop(cancelled())
    return control


@pytest.mark.parametrize(("task", "alias", "inputs"), CASES, ids=[case[0] for case in CASES])
def test_a_stopped_job_generates_one_token_at_most(
    run_task: TaskRunner, generated: Any, task: str, alias: str | None, inputs: Any
) -> None:
    spy = generated(task, alias)
    _run(run_task, task, alias, inputs, JobControl("job", "lease"))
    _run(run_task, task, alias, inputs, _stopped())
    free, stopped = spy.new_tokens
    # Encoder-decoders count their start token; decoders count only what they added.
    assert free > 2, f"the free run made {free} tokens: too few to tell a stop from an end"
    assert stopped <= 2, f"{stopped} tokens after the stop, against {free} without"


def test_a_batch_generates_on_while_one_of_its_jobs_still_should(
    run_task: TaskRunner, generated: Any
) -> None:
    def batch(*controls: JobControl) -> BatchControl:
        entries = [_Entry(None, [], control, None) for control in controls]  # type: ignore[arg-type]
        return BatchControl(entries)

    spy = generated("text-generation", None)
    _run(run_task, "text-generation", None, "Hello", batch(_stopped(), JobControl("b", "l")))
    _run(run_task, "text-generation", None, "Hello", batch(_stopped(), _stopped()))
    on, off = spy.new_tokens
    assert on > 2 and off <= 1, (on, off)
