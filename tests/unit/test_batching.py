"""The batcher alone: who waits for whom, what runs together, and who fails alone.

Threads are orchestrated with events (a forward pass that blocks until released),
never with timing thresholds: "a lone job did not wait" is read from the batch it
ran in (one job, a recorded wait below ``max_wait``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from services.worker import batching
from services.worker.batching import Batcher, BatchInfo, params_key
from services.worker.control import JobControl, cancelled
from shared.errors import JobCancelled, JobTimeout
from shared.registry import BatchLimits, ModelSpec

WIDE = BatchLimits(max_size=32, max_wait_ms=10_000)


class Forward:
    """A fake forward pass: records each batch; the first one blocks until released."""

    def __init__(self, *, block_first: bool = False) -> None:
        self.batches: list[list[Any]] = []
        self.threads: list[threading.Thread] = []
        self.release = threading.Event()
        self.entered = threading.Event()
        self.block_first = block_first

    def __call__(self, items: list[Any]) -> list[Any]:
        self.batches.append(list(items))
        self.threads.append(threading.current_thread())
        if self.block_first and len(self.batches) == 1:
            self.entered.set()
            assert self.release.wait(10)
        if any(item == "bad" for item in items):
            raise ValueError("the model cannot take 'bad'")
        return [f"out:{item}" for item in items]


class Job(threading.Thread):
    """One job's thread: announce, then predict (as the runner does)."""

    def __init__(
        self,
        batcher: Batcher,
        items: list[Any],
        forward: Callable[[list[Any]], list[Any]],
        *,
        key: Any = "k",
        limits: BatchLimits = WIDE,
        control: JobControl | None = None,
        hold: threading.Event | None = None,
    ) -> None:
        super().__init__(daemon=True)
        self.batcher, self.items, self.forward = batcher, items, forward
        self.key, self.limits, self.hold = key, limits, hold
        self.control = control or JobControl(f"job-{items[0]}", "lease")
        self.outputs: list[Any] | None = None
        self.info: BatchInfo | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with self.batcher.announce("m"):
                if self.hold is not None:
                    assert self.hold.wait(10)
                self.outputs, self.info = self.batcher.predict(
                    "m",
                    self.items,
                    self.forward,
                    key=self.key,
                    control=self.control,
                    limits=self.limits,
                )
        except BaseException as exc:
            self.error = exc


def _until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.005)


def _waiting(batcher: Batcher) -> int:
    line = batcher._line("m")
    with line.cond:
        return len(line.waiting)


def _started(batcher: Batcher, items: list[Any], forward: Forward, **kwargs: Any) -> Job:
    job = Job(batcher, items, forward, **kwargs)
    job.start()
    return job


def test_a_lone_job_runs_at_once_in_a_batch_of_one() -> None:
    batcher, forward = Batcher(), Forward()
    job = Job(batcher, ["a"], forward)
    job.run()
    assert job.outputs == ["out:a"] and job.info is not None
    assert job.info.jobs == 1 and job.info.items == 1
    assert job.info.waited_ms < WIDE.max_wait_ms  # it did not wait for max_wait


def test_jobs_that_queue_behind_a_running_batch_run_together() -> None:
    batcher, forward = Batcher(), Forward(block_first=True)
    first = _started(batcher, ["a"], forward)
    assert forward.entered.wait(10)
    others = [_started(batcher, [name], forward) for name in ("b", "c", "d")]
    _until(lambda: _waiting(batcher) == 3)
    forward.release.set()
    for job in (first, *others):
        job.join(10)
    assert first.info is not None and first.info.jobs == 1
    assert [job.outputs for job in others] == [["out:b"], ["out:c"], ["out:d"]]
    numbers = {job.info.number for job in others if job.info is not None}
    assert len(numbers) == 1 and others[0].info is not None and others[0].info.jobs == 3
    assert sorted(forward.batches[1]) == ["b", "c", "d"]


def test_a_leader_waits_for_a_job_on_its_way_and_takes_it_along() -> None:
    batcher, forward = Batcher(), Forward()
    hold = threading.Event()
    coming = _started(batcher, ["late"], forward, hold=hold)  # announced, still decoding
    _until(lambda: batcher._line("m").coming == 1)
    leader = _started(batcher, ["first"], forward)
    _until(lambda: _waiting(batcher) == 1)
    hold.set()
    leader.join(10)
    coming.join(10)
    assert leader.info is not None and coming.info is not None
    assert leader.info.number == coming.info.number and leader.info.jobs == 2
    assert forward.batches == [["first", "late"]]


def test_max_size_counts_items_and_parameters_keep_batches_apart() -> None:
    batcher, forward = Batcher(), Forward(block_first=True)
    limits = BatchLimits(max_size=3, max_wait_ms=0)
    first = _started(batcher, ["x"], forward, limits=limits)
    assert forward.entered.wait(10)
    jobs = [
        _started(batcher, ["a1", "a2"], forward, limits=limits),
        _started(batcher, ["b"], forward, limits=limits),
        _started(batcher, ["c"], forward, limits=limits),
        _started(batcher, ["other"], forward, limits=limits, key="other-params"),
    ]
    _until(lambda: _waiting(batcher) == 4)
    forward.release.set()
    for job in (first, *jobs):
        job.join(10)
    assert all(len(batch) <= 3 for batch in forward.batches)
    assert ["other"] in forward.batches  # never mixed with the others' parameters
    assert [job.outputs for job in jobs] == [
        ["out:a1", "out:a2"],
        ["out:b"],
        ["out:c"],
        ["out:other"],
    ]


def test_a_bad_input_in_a_batch_fails_only_its_own_job() -> None:
    batcher, forward = Batcher(), Forward(block_first=True)
    first = _started(batcher, ["x"], forward)
    assert forward.entered.wait(10)
    jobs = [_started(batcher, [name], forward) for name in ("ok1", "bad", "ok2")]
    _until(lambda: _waiting(batcher) == 3)
    forward.release.set()
    for job in (first, *jobs):
        job.join(10)
    good1, bad, good2 = jobs
    assert good1.outputs == ["out:ok1"] and good2.outputs == ["out:ok2"]
    assert isinstance(bad.error, ValueError) and bad.outputs is None
    assert good1.info is not None and good1.info.jobs == 3  # they were in one batch


@pytest.fixture
def no_looks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Jobs in line never look on their own: whatever they do, something woke them."""
    monkeypatch.setattr(batching, "LOOK_SECONDS", 3600.0)


def test_a_job_cancelled_while_in_line_leaves_it_and_the_rest_run(no_looks: None) -> None:
    batcher, forward = Batcher(), Forward(block_first=True)
    first = _started(batcher, ["x"], forward)
    assert forward.entered.wait(10)
    doomed = JobControl("doomed", "lease")
    jobs = [
        _started(batcher, ["a"], forward),
        _started(batcher, ["gone"], forward, control=doomed),
        _started(batcher, ["b"], forward),
    ]
    _until(lambda: _waiting(batcher) == 3)
    doomed.stop(cancelled())
    jobs[1].join(10)
    assert isinstance(jobs[1].error, JobCancelled)
    forward.release.set()
    for job in (first, jobs[0], jobs[2]):
        job.join(10)
    assert jobs[0].outputs == ["out:a"] and jobs[2].outputs == ["out:b"]
    assert all("gone" not in batch for batch in forward.batches)


class CountedControl(JobControl):
    """A control that counts how often its job looked at its stop flag."""

    looks = 0

    @property
    def stopping(self) -> bool:
        self.looks += 1
        return super().stopping


def test_a_job_in_line_sleeps_until_something_concerns_it(no_looks: None) -> None:
    batcher, forward = Batcher(), Forward(block_first=True)
    first = _started(batcher, ["x"], forward)
    assert forward.entered.wait(10)
    control = CountedControl("waiting", "lease")
    waiting = _started(batcher, ["w"], forward, control=control)
    _until(lambda: _waiting(batcher) == 1)
    looks = control.looks
    time.sleep(0.3)  # a job that polled its flag (every 50 ms, before) would look 6 times
    assert control.looks == looks
    forward.release.set()
    waiting.join(10)
    assert waiting.outputs == ["out:w"]
    first.join(10)


def test_a_claim_lingers_while_the_running_pass_is_expected_to_go_on() -> None:
    now = [100.0]
    batcher = Batcher(clock=lambda: now[0])
    assert batcher.linger("m") == 0.0  # a model never seen
    forward = Forward(block_first=True)
    first = _started(batcher, ["x"], forward)
    assert forward.entered.wait(10)
    assert batcher.linger("m") == batching.LINGER_MOST  # no pass ended yet: max_wait, capped
    now[0] += 0.1  # the pass takes 100 ms
    forward.release.set()
    first.join(10)
    assert batcher.linger("m") == 0.0  # nothing runs: a lone job's claim commits at once
    forward = Forward(block_first=True)
    second = _started(batcher, ["y"], forward)
    assert forward.entered.wait(10)
    assert batcher.linger("m") == batching.LINGER_MOST  # 100 ms left, if it takes as long
    now[0] += 0.095
    assert batcher.linger("m") == pytest.approx(0.005)
    now[0] += 0.01
    assert batcher.linger("m") == 0.0  # past its expected end: it ends any moment
    forward.release.set()
    second.join(10)
    assert second.outputs == ["out:y"]


def test_a_job_in_line_leaves_it_at_its_deadline(no_looks: None) -> None:
    batcher, forward = Batcher(), Forward(block_first=True)
    first = _started(batcher, ["x"], forward)
    assert forward.entered.wait(10)
    late = _started(batcher, ["late"], forward, control=JobControl("late", "l", time_limit=0.2))
    late.join(10)
    assert isinstance(late.error, JobTimeout)
    forward.release.set()
    first.join(10)
    assert first.outputs == ["out:x"] and forward.batches == [["x"]]


def test_a_job_waiting_behind_a_batch_whose_jobs_all_stopped_runs(no_looks: None) -> None:
    batcher, forward = Batcher(), Forward(block_first=True)
    stuck = JobControl("stuck", "lease")
    first = _started(batcher, ["stuck"], forward, control=stuck)
    assert forward.entered.wait(10)
    after = _started(batcher, ["next"], forward)
    _until(lambda: _waiting(batcher) == 1)
    stuck.stop(cancelled())  # wakes the job waiting behind it: the model is free
    after.join(10)
    assert after.outputs == ["out:next"]
    forward.release.set()
    first.join(10)


def test_a_batch_whose_jobs_all_stopped_no_longer_holds_the_model() -> None:
    batcher, forward = Batcher(), Forward(block_first=True)
    stuck = JobControl("stuck", "lease")
    first = _started(batcher, ["stuck"], forward, control=stuck)
    assert forward.entered.wait(10)
    stuck.stop(cancelled())  # its thread stays in the forward pass, as a stuck one would
    after = _started(batcher, ["next"], forward)
    after.join(10)
    assert after.outputs == ["out:next"]
    assert forward.threads[0] != forward.threads[1]  # the stuck pass kept its thread
    forward.release.set()
    first.join(10)


def test_a_models_batches_all_run_on_its_one_forward_thread() -> None:
    batcher, forward = Batcher(), Forward()
    for item in ("a", "b", "c"):
        job = _started(batcher, [item], forward)
        job.join(10)
        assert job.outputs == [f"out:{item}"]
    assert len(set(forward.threads)) == 1
    assert forward.threads[0].name.startswith("pipeq-forward-m")


def test_max_size_one_switches_batching_off() -> None:
    batcher, forward = Batcher(), Forward(block_first=True)
    off = BatchLimits(max_size=1, max_wait_ms=10_000)
    first = _started(batcher, ["a"], forward, limits=off)
    assert forward.entered.wait(10)
    second = _started(batcher, ["b"], forward, limits=off)
    second.join(10)  # ran beside the blocked one: no line
    assert second.outputs == ["out:b"] and second.info is not None and second.info.jobs == 1
    forward.release.set()
    first.join(10)


def test_batch_defaults_follow_the_task_and_the_registry_overrides_them() -> None:
    spec = ModelSpec(alias="a", task="text-classification", source="x")
    assert spec.batching == BatchLimits(max_size=32, max_wait_ms=5)
    tuned = ModelSpec(alias="a", task="text-generation", source="x", batch={"max_wait_ms": 0})
    assert tuned.batching == BatchLimits(max_size=8, max_wait_ms=0)
    assert ModelSpec(alias="a", task="fine-tune", source="x").batching.max_size == 1


@pytest.mark.parametrize("seeded", [False, True])
def test_jobs_batch_only_with_equal_parameters(seeded: bool) -> None:
    from shared.params import validate_params

    raw = {"seed": 3} if seeded else {"max_new_tokens": 5}
    one, two = (validate_params("text-generation", raw) for _ in range(2))
    assert (params_key(one) == params_key(two)) is not seeded
    assert params_key(validate_params("text-classification", {})) != params_key(
        validate_params("text-classification", {"top_k": 1})
    )
