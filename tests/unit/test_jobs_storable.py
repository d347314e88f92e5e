"""The first look at any job: what no task can use and the database cannot store."""

from __future__ import annotations

import pytest

from shared.errors import InvalidJob
from shared.messages import MAX_DEPTH, check_json, storable


def _nested(depth: int) -> object:
    value: object = "x"
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ({"inputs": "a\x00b"}, "job.inputs: contains a NUL character"),
        ({"inputs": ["ok", "\udc80"]}, "job.inputs[1]: contains an unpaired surrogate"),
        ({"params": {"k\x00": 1}}, "job.params: a key contains a NUL"),
        ({"params": {"t": float("-inf")}}, "job.params.t: NaN and infinity"),
        ({"inputs": _nested(10_000)}, f"nested deeper than {MAX_DEPTH} levels"),
    ],
)
def test_what_is_refused_and_where(value: object, fragment: str) -> None:
    with pytest.raises(InvalidJob, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        check_json(value)


def test_what_passes() -> None:
    check_json(
        {"inputs": ["émoji 👩‍👩‍👧", "\u202e", 1.5, None, True], "params": {"a": _nested(60)}}
    )


def test_storable_keeps_what_it_can() -> None:
    kept = storable({"a\x00": ["b\udc80", float("nan"), 3], "deep": _nested(10_000)})
    assert kept["a\ufffd"] == ["b?", None, 3]
    depth, node = 0, kept["deep"]
    while isinstance(node, list):
        depth, node = depth + 1, node[0]
    assert depth < MAX_DEPTH and node is None
