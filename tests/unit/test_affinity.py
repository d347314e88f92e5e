"""Each process of a ``--processes`` group keeps its threads on cores of its own, and its
forward passes on every core (``services/worker/affinity.py``)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from services.worker import affinity
from services.worker.handlers import Loaded
from tests.faults import EchoHandler
from tests.unit.fake_runner import fake_runner, message


def test_each_process_gets_an_even_contiguous_share() -> None:
    assert affinity.shares([0, 1], 2) == [[0], [1]]
    assert affinity.shares([3, 1, 2, 0], 2) == [[0, 1], [2, 3]]
    assert affinity.shares([0, 1, 2], 2) == [[0], [1, 2]]
    assert affinity.shares(list(range(8)), 3) == [[0, 1], [2, 3, 4], [5, 6, 7]]
    assert affinity.shares([0, 1], 3) is None  # fewer cores than processes: none of its own
    assert affinity.shares([0, 1], 1) is None  # one process: nothing to share
    assert affinity.parse("2,3") == [2, 3]


def test_a_quota_below_the_cores_pins_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    allowed = sorted(os.sched_getaffinity(0))
    monkeypatch.setattr("services.worker.processes.cores", lambda: len(allowed))
    assert affinity.group_shares(2) == affinity.shares(allowed, 2)
    monkeypatch.setattr("services.worker.processes.cores", lambda: len(allowed) - 1)
    assert affinity.group_shares(2) is None


@pytest.fixture
def unpinned() -> Iterator[None]:
    yield
    affinity._ALL = None  # the tests pin threads of their own only


def _in_thread(work: Callable[[], Any]) -> Any:
    """``work``'s result, run on a thread of its own: pinning affects that thread alone."""
    out: list[Any] = []
    failed: list[BaseException] = []

    def target() -> None:
        try:
            out.append(work())
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if failed:
        raise failed[0]
    return out[0]


@pytest.mark.usefixtures("unpinned")
def test_threads_started_after_pin_stay_on_its_cores_and_a_pass_widens() -> None:
    allowed = os.sched_getaffinity(0)
    own = [min(allowed)]

    def work() -> dict[str, Any]:
        affinity.pin(own)
        seen: dict[str, Any] = {"pinned": os.sched_getaffinity(0)}
        child = threading.Thread(target=lambda: seen.update(child=os.sched_getaffinity(0)))
        child.start()
        child.join()
        with affinity.widened():
            seen["pass"] = os.sched_getaffinity(0)
        seen["after"] = os.sched_getaffinity(0)
        return seen

    seen = _in_thread(work)
    assert seen["pinned"] == seen["child"] == seen["after"] == set(own)
    assert seen["pass"] == allowed
    assert os.sched_getaffinity(0) == allowed  # the test's own thread never moved


def _torch_threads(pinned: bool) -> int:
    """Torch's default thread count in a new process, pinned to one core first or not."""
    import subprocess
    import sys

    pin = "affinity.pin([min(os.sched_getaffinity(0))])" if pinned else ""
    code = f"import os\nfrom services.worker import affinity\n{pin}\nimport torch\n"
    code += "print(torch.get_num_threads())"
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    root = Path(__file__).parents[2]
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=root
    )
    assert run.returncode == 0, run.stderr
    return int(run.stdout)


def test_openmp_counts_every_core_though_the_process_is_pinned() -> None:
    """libgomp counts its cores once, as torch loads it; counted after the pin, passes on
    more threads than that count spin too briefly between operations (``load_openmp``).
    Its count shows as torch's default thread count where OMP_NUM_THREADS is not set."""
    unpinned = _torch_threads(pinned=False)
    if unpinned < 2:
        pytest.skip("torch counts one core here: a pin to one core would change nothing")
    assert _torch_threads(pinned=True) == unpinned


def test_unpinned_a_pass_changes_nothing() -> None:
    before = os.sched_getaffinity(0)
    with affinity.widened():
        assert os.sched_getaffinity(0) == before
    assert affinity._ALL is None  # never pinned


@pytest.mark.usefixtures("unpinned")
def test_a_pinned_workers_forward_pass_runs_on_every_core(db_url: str, tmp_path: Path) -> None:
    """Through the real runner and batcher: the job's thread stays on its core, and the
    model's forward thread, which it starts, makes its pass on all of them."""
    allowed = os.sched_getaffinity(0)
    seen: list[set[int]] = []

    class Recording(EchoHandler):
        def predict(self, loaded: Loaded, items: list[Any], params: Any) -> list[Any]:
            seen.append(os.sched_getaffinity(0))
            return super().predict(loaded, items, params)

    with fake_runner(db_url, tmp_path, handlers=lambda task: Recording()) as runner:

        def work() -> tuple[str, set[int]]:
            affinity.pin([min(allowed)])
            return runner.run(message("hello"), fallback_id="x"), os.sched_getaffinity(0)

        state, after = _in_thread(work)
    assert state == "SUCCEEDED"
    assert seen == [allowed]
    assert after == {min(allowed)}
