"""The bad-input corpus: every case a foreign producer might send, and what it must end as.

Cases for tasks whose handlers and tiny models this build has (image, audio,
generation) are generated from ``services.worker.tiny.samples()``, so they run
wherever those tasks are served. ``tests/integration/test_bad_input.py`` runs them.
"""

from __future__ import annotations

import base64
import pickle
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.worker.tiny import samples

TEXT_MODEL = "tiny-text-classification"
MARKER = Path("/tmp") / f"pipeq-unpickled-{uuid.uuid4().hex}"
SERVED = set(samples())


class Unpickled:
    """Unpickling this runs a command: the proof that a body was unpickled."""

    def __reduce__(self) -> Any:
        import os

        return (os.system, (f"touch {MARKER}",))


@dataclass
class Case:
    name: str
    job: Any = None
    fragment: str = ""
    body: bytes | None = None
    content_type: str = "application/json"
    headers: dict[str, Any] = field(default_factory=lambda: {"task": "pipeq.run_job"})
    #: The client refuses it at submit (True), lets the worker fail it (False), or cannot
    #: express it at all (None: a raw body, a header).
    refused_at_submit: bool | None = False
    #: What the client's refusal says, when it differs from the worker's.
    submit_fragment: str | None = None
    error_types: tuple[str, ...] = ("invalid_job", "invalid_input", "invalid_parameter")


def _job(task: str = "text-classification", **fields: Any) -> dict[str, Any]:
    model = "tiny-text-classification" if task == "text-classification" else f"tiny-{task}"
    return {"task": task, "model": model, "inputs": "fine", **fields}


def _nested(depth: int) -> Any:
    value: Any = "deep"
    for _ in range(depth):
        value = [value]
    return value


def _deep_body(depth: int) -> bytes:
    """A job whose inputs nest ``depth`` lists deep (json.dumps itself cannot write it)."""
    head = '[[{"task": "text-classification", "model": "tiny-text-classification", "inputs": '
    return (head + "[" * depth + '"deep"' + "]" * depth + "}], {}, {}]").encode()


def _media_cases(task: str, kind: str) -> list[Case]:
    garbage = base64.b64encode(b"this is not an " + kind.encode() + b" file" * 20).decode()
    return [
        Case(f"{task}: corrupt base64", _job(task, inputs={"base64": "@@not base64@@"}), "base64"),
        Case(f"{task}: {kind} that does not decode", _job(task, inputs={"base64": garbage}), ""),
        Case(
            f"{task}: ../ in a file reference",
            _job(task, inputs={"file": "../../../etc/passwd"}),
            "",
        ),
        Case(f"{task}: an absolute file reference", _job(task, inputs={"file": "/etc/passwd"}), ""),
        Case(f"{task}: a URL", _job(task, inputs="http://169.254.169.254/latest/meta-data"), ""),
    ]


def corpus() -> list[Case]:
    cases = [
        Case("not JSON", body=b"{this is not json", fragment="JSON", refused_at_submit=None),
        Case(
            "a pickled body",
            body=pickle.dumps([[Unpickled()], {}, {}]),
            content_type="application/x-python-serialize",
            fragment="pipeq accepts JSON only",
            refused_at_submit=None,
        ),
        Case("a bare string", "just a string", "JSON object", refused_at_submit=None),
        Case(
            "missing task",
            {"model": TEXT_MODEL, "inputs": "x"},
            "task: Field required",
            submit_fragment="task",
        ),
        Case("missing model", {"task": "text-classification", "inputs": "x"}, "model"),
        Case("missing inputs", {"task": "text-classification", "model": TEXT_MODEL}, "inputs"),
        Case("task of the wrong type", _job(task=5), "task"),
        Case("model of the wrong type", {**_job(), "model": ["a", "b"]}, "model"),
        Case("params of the wrong type", _job(params="top_k=2"), "params"),
        Case("a parameter of the wrong type", _job(params={"top_k": "3"}), "top_k"),
        Case("priority out of range", _job(priority=99), "priority"),
        Case("inputs of the wrong type", _job(inputs={"text": 1}), "expected a text"),
        Case(
            "an unknown task",
            _job(task="dance"),
            "unknown task",
            error_types=("unsupported_task",),
        ),
        Case(
            "an unknown model",
            {**_job(), "model": "ghost"},
            "unknown model",
            error_types=("unknown_model",),
        ),
        Case(
            "an unknown Celery task name",
            _job(),
            "unknown task name 'os.system'",
            headers={"task": "os.system"},
            refused_at_submit=None,
        ),
        Case(
            "one of Celery's built-in tasks",
            _job(),
            "unknown task name 'celery.backend_cleanup'",
            headers={"task": "celery.backend_cleanup"},
            refused_at_submit=None,
        ),
        Case("no task header at all", _job(), "no task header", headers={}, refused_at_submit=None),
        Case("oversized payload", _job(inputs="x" * (11 * 2**20)), "the limit is"),
        Case("corrupt base64 for a text task", _job(inputs={"base64": "%%%"}), "expected a text"),
        Case("NaN", _job(params={"top_k": float("nan")}), "NaN and infinity"),
        Case("infinity", _job(inputs=["a", float("inf")]), "NaN and infinity"),
        Case("an empty text", _job(inputs=""), "empty"),
        Case("an empty list", _job(inputs=[]), "empty"),
        Case("20,000 texts", _job(inputs=["a"] * 20_000), "the limit is 1024"),
        Case("a NUL character", _job(inputs="a\x00b"), "NUL"),
        Case("a NUL in a key", _job(params={"top_k\x00": 1}), "NUL"),
        Case("an unpaired surrogate", _job(inputs="a\ud800b"), "surrogate"),
        Case(
            "nested 100,000 deep",
            body=_deep_body(100_000),
            fragment="",
            refused_at_submit=None,
        ),
        Case("nested 500 deep", _job(inputs=_nested(500)), "nested deeper than 64"),
        Case(
            "SQL in the model alias",
            {**_job(), "model": "x'; DROP TABLE jobs; --"},
            "model",
        ),
        Case("a model source instead of an alias", {**_job(), "model": "org/bert-base"}, "model"),
        Case("a path instead of an alias", {**_job(), "model": "../../models/x"}, "model"),
        Case("a source field", _job(source="/etc"), "source: Extra inputs are not permitted"),
        Case("a revision field", _job(revision="main"), "revision: Extra inputs"),
        Case(
            "trust_remote_code",
            _job(trust_remote_code=True),
            "trust_remote_code: Extra inputs are not permitted",
        ),
        Case(
            "trust_remote_code as a parameter",
            _job(params={"trust_remote_code": True}),
            "unknown parameter",
        ),
        Case("../ in a file reference for a text task", _job(inputs={"file": "../x"}), "text"),
    ]
    if "image-classification" in SERVED:
        cases += _media_cases("image-classification", "image")
    if "automatic-speech-recognition" in SERVED:
        cases += _media_cases("automatic-speech-recognition", "audio")
    if "text-generation" in SERVED:
        cases += [
            Case(
                "a huge max_new_tokens",
                _job("text-generation", params={"max_new_tokens": 10**9}),
                "max_new_tokens",
            ),
            Case(
                "a negative temperature",
                _job("text-generation", params={"temperature": -1.0}),
                "temperature",
            ),
        ]
    return cases
