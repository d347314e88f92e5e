"""A model served from a process of its own (``services/worker/model_process.py``), on the
tiny models: the same answers as in the worker, a stop that reaches the pass there, a pass
that ignores its stop killed with its process, a process that dies failing only its pass,
errors that keep their kind, and the memory budget's view of it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.worker import affinity
from services.worker.control import JobControl, cancelled
from services.worker.handlers import handler_for
from services.worker.model_process import ModelProcess, _portable, _rebuilt
from services.worker.registry import Models
from services.worker.tiny import sample_media
from shared.errors import InvalidParameter, JobCancelled, JobError
from shared.registry import load_registry
from tests.faults import faulty
from tests.unit.conftest import TaskRunner


def _free() -> JobControl:
    return JobControl("job", "lease")


@pytest.fixture
def serving(run_task: TaskRunner) -> Iterator[Any]:
    """Starts a model process for a task's tiny model; every one is closed at the end."""
    started: list[ModelProcess] = []

    def start(task: str, **options: Any) -> ModelProcess:
        spec = run_task.spec(task).model_copy(update={"process": True})
        process = ModelProcess(spec, "cpu", **options)
        process.start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.close()


@pytest.mark.parametrize(
    ("task", "inputs", "raw"),
    [
        ("text-classification", ["I love it", "I hate it", "fine"], {"top_k": 2}),
        ("text-generation", ["Hello world", "The quick brown fox"], {"max_new_tokens": 6}),
        ("object-detection", [sample_media.inline(sample_media.image_bytes(), "a.png")], {}),
    ],
)
def test_a_model_in_its_own_process_answers_as_in_the_worker(
    run_task: TaskRunner, serving: Any, task: str, inputs: list[Any], raw: dict[str, Any]
) -> None:
    handler = handler_for(task)
    params = handler.params(run_task.spec(task), raw)
    items, _batched = handler.decode(inputs, params)
    want = handler.predict(run_task.loaded(task), items, params)
    process = serving(task)
    assert process.tensor_bytes > 0 and process.placement["devices"] == ["cpu"]
    assert process.predict(handler_for, items, params, control=_free()) == want


def test_a_stop_reaches_the_pass_in_its_process(run_task: TaskRunner, serving: Any) -> None:
    handler = handler_for("text-generation")
    params = handler.params(run_task.spec("text-generation"), {"max_new_tokens": 12})
    process = serving("text-generation")
    stopped = _free()
    stopped.stop(cancelled())
    with pytest.raises(JobCancelled):
        process.predict(handler_for, ["Hello"], params, control=stopped)
    pid = process.pid
    assert process.predict(handler_for, ["Hello"], params, control=_free())  # serves on
    assert process.pid == pid


def test_a_pinned_worker_starts_its_model_process_on_every_core(serving: Any) -> None:
    """A worker of a ``--processes`` group keeps its threads on its own cores (affinity.py);
    the model's process, which only makes passes, gets every core."""
    allowed = os.sched_getaffinity(0)
    seen: list[set[int]] = []

    def start() -> None:
        affinity.pin([min(allowed)])  # this thread only, as a worker's job thread is
        try:
            seen.append(os.sched_getaffinity(serving("text-classification").pid))
            seen.append(os.sched_getaffinity(0))
        finally:
            affinity._ALL = None

    thread = threading.Thread(target=start)
    thread.start()
    thread.join()
    assert seen == [allowed, {min(allowed)}]


def test_a_pass_that_ignores_its_stop_is_killed_with_its_process(
    run_task: TaskRunner, serving: Any
) -> None:
    handler = handler_for("text-classification")
    params = handler.params(run_task.spec("text-classification"), {})
    process = serving("text-classification", grace_seconds=0.5)
    first = process.pid
    control = _free()
    threading.Timer(0.3, control.stop, args=(cancelled(),)).start()
    began = time.monotonic()
    with pytest.raises(JobCancelled):  # the pass sleeps 60 s and never checks
        process.predict(faulty, ["fault:sleep=60"], params, control=control)
    assert time.monotonic() - began < 30, "the stuck pass was waited for, not killed"
    assert not process.alive
    outputs = process.predict(faulty, ["next in line"], params, control=_free())
    assert outputs[0]["label"] in ("NEGATIVE", "POSITIVE") and process.pid != first


def test_a_process_that_dies_fails_its_pass_and_the_next_pass_starts_a_new_one(
    run_task: TaskRunner, serving: Any
) -> None:
    handler = handler_for("text-classification")
    params = handler.params(run_task.spec("text-classification"), {})
    process = serving("text-classification")
    first = process.pid
    with pytest.raises(JobError) as died:
        process.predict(faulty, ["fine", "fault:exit"], params, control=_free())
    assert died.value.code == "model_failure"
    assert str(died.value) == (
        "the process serving model 'tiny-text-classification' died (exit code 137) during "
        "this job's forward pass"
    )
    assert process.predict(faulty, ["fine"], params, control=_free())
    assert process.pid != first


def test_errors_keep_their_kind_and_message_across_the_pipe() -> None:
    # InvalidParameter's constructor takes two arguments: it cannot be unpickled as itself.
    invalid = _rebuilt(_portable(InvalidParameter("tgt_lang", "is needed")))
    assert isinstance(invalid, JobError) and invalid.code == "invalid_parameter"
    assert str(invalid) == "parameter 'tgt_lang': is needed"
    bug = _rebuilt(_portable(ValueError("bad value")))
    assert type(bug) is ValueError and str(bug) == "bad value"

    class Odd(Exception):
        def __init__(self, a: int, b: int) -> None:
            super().__init__(f"{a}/{b}")

    odd = _rebuilt(_portable(Odd(1, 2)))
    assert type(odd) is RuntimeError and str(odd) == "Odd: 1/2"


def test_the_memory_budget_counts_the_process_and_eviction_ends_it(
    tiny_registry: Path, tmp_path: Path
) -> None:
    (tmp_path / "models.toml").write_text(
        "[models.served-apart]\n"
        'task = "text-classification"\n'
        f'source = "{tiny_registry.parent / "tiny-text-classification"}"\n'
        "process = true\n"
    )
    models = Models(load_registry(tmp_path / "models.toml"), device="cpu", queues=("nlp",))
    loaded = models.get("served-apart")
    process = loaded.model
    assert isinstance(process, ModelProcess) and process.alive
    listed = models.inventory()["models"][0]
    assert listed["bytes"] == process.tensor_bytes > 0 and listed["devices"] == ["cpu"]
    del loaded  # the job's handle
    assert models.evict("served-apart")
    assert not process.alive and models.used == 0
