"""Suspects run alone: running jobs end first, new ones wait, a stuck one is not waited for ever."""

from __future__ import annotations

import threading
import time

from services.worker.gate import Gate


def _eventually(check: object, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_a_suspect_waits_for_running_jobs_and_holds_back_new_ones() -> None:
    gate = Gate()
    order: list[str] = []
    gate.enter()  # a job already running
    gate.enter()  # the suspect, claimed

    def suspect() -> None:
        with gate.alone("s") as isolated:
            order.append(f"suspect alone={isolated} running={gate.running}")
            time.sleep(0.2)
            order.append("suspect done")
        gate.leave()

    def newcomer() -> None:
        gate.enter()
        order.append("newcomer")
        gate.leave()

    first = threading.Thread(target=suspect)
    first.start()
    _eventually(lambda: gate._queued_alone == 1)
    second = threading.Thread(target=newcomer)
    second.start()
    time.sleep(0.1)
    assert order == []  # the suspect waits for the running job; the newcomer waits too
    order.append("running job done")
    gate.leave()
    first.join(5)
    second.join(5)
    assert order == [
        "running job done",
        "suspect alone=True running=1",
        "suspect done",
        "newcomer",
    ]
    assert gate.running == 0


def test_a_stuck_job_is_waited_for_only_so_long() -> None:
    gate = Gate(patience=0.2)
    gate.enter()  # stuck for good
    gate.enter()
    began = time.monotonic()
    with gate.alone("s") as isolated:
        assert not isolated and gate.running == 2
    assert time.monotonic() - began < 2
    gate.leave()
    gate.enter()  # the gate is open again
    assert gate.running == 2


def test_a_place_alone_can_be_taken_directly_and_waits_for_another() -> None:
    gate = Gate()
    assert gate.enter(alone=True)
    taken: list[bool] = []
    other = threading.Thread(target=lambda: taken.append(gate.enter(alone=True)))
    other.start()
    time.sleep(0.1)
    assert taken == []  # one suspect at a time, whatever the patience
    gate.leave(True)
    other.join(5)
    assert taken == [True]
    gate.leave(True)
    assert not gate.enter() and gate.running == 1
