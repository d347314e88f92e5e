"""Seeded sampling stays reproducible while other threads of the worker use the models."""

from __future__ import annotations

import threading
import time

from services.worker.handlers.generation import RandomGuard
from tests.unit.conftest import TaskRunner


def test_a_writer_excludes_readers_and_goes_before_new_ones() -> None:
    guard = RandomGuard()
    events: list[str] = []
    reading = threading.Event()

    def reader(name: str, hold: float) -> None:
        with guard.shared():
            events.append(f"{name} in")
            reading.set()
            time.sleep(hold)
            events.append(f"{name} out")

    def writer() -> None:
        with guard.exclusive():
            events.append("writer in")
            time.sleep(0.05)
            events.append("writer out")

    first = threading.Thread(target=reader, args=("r1", 0.2))
    first.start()
    reading.wait()
    write = threading.Thread(target=writer)
    write.start()
    time.sleep(0.05)  # the writer now waits for r1
    late = threading.Thread(target=reader, args=("r2", 0.0))
    late.start()
    for thread in (first, write, late):
        thread.join(timeout=5)
    assert events == ["r1 in", "r1 out", "writer in", "writer out", "r2 in", "r2 out"]


def test_seeded_sampling_ignores_concurrent_batched_calls(run_task: TaskRunner) -> None:
    sampled = {"do_sample": True, "temperature": 1.5, "seed": 9, "max_new_tokens": 8}
    alone = run_task("text-generation", "Hello", sampled)
    stop = threading.Event()

    def busy() -> None:  # batched pipeline calls: each draws from torch's generator
        while not stop.is_set():
            run_task("text-classification", ["good", "bad", "ok"], {})
            run_task("text-generation", ["a", "b"], {"max_new_tokens": 2})

    run_task.loaded("text-classification")  # load in this thread, before the others start
    threads = [threading.Thread(target=busy) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        results = [run_task("text-generation", "Hello", sampled) for _ in range(15)]
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert all(result == alone for result in results)
