"""A model served from a process of its own (registry ``process = true``), through a real
worker on real RabbitMQ and PostgreSQL (``tests/integration/faultenv.py``): the same answers
as the model in the worker, a job whose input kills the model's process fails alone while the
worker and the other jobs go on, and a stuck pass is failed at its limit and killed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.faultenv import MODEL, TASK, FaultEnv, fault_env

APART = "tiny-classifier-apart"


@pytest.fixture(scope="module")
def faults(tiny_registry: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultEnv]:
    folder = tmp_path_factory.mktemp("model-process")
    source = tiny_registry.parent / "tiny-text-classification"
    registry = folder / "models.toml"
    registry.write_text(
        f'[models.{MODEL}]\ntask = "{TASK}"\nsource = "{source}"\n\n'
        f'[models.{APART}]\ntask = "{TASK}"\nsource = "{source}"\nprocess = true\n'
    )
    with fault_env(registry, folder) as env:
        # Room for a new process (spawn, imports, load: 4-8 s here) inside a job's limit.
        env.env["PIPEQ_TIME_LIMITS"] = '{"nlp": 15}'
        env.pool.ensure(1)
        yield env


def test_a_model_in_its_own_process_answers_as_in_the_worker(faults: FaultEnv) -> None:
    texts = ["I love this", "I hate that", "it was fine"]
    here = faults.client.submit(TASK, MODEL, texts, params={"top_k": 2})
    apart = faults.client.submit(TASK, APART, texts, params={"top_k": 2})
    here_done = faults.client.wait(here.id, timeout=60)
    apart_done = faults.client.wait(apart.id, timeout=60)
    assert apart_done.state == here_done.state == "SUCCEEDED"
    assert apart_done.result == here_done.result
    assert f"loaded model {APART} (text-classification) on cpu" in faults.pool.logs()
    assert "its own process (pid" in faults.pool.logs()


def test_a_job_that_kills_the_model_process_fails_alone(faults: FaultEnv) -> None:
    good = [faults.client.submit(TASK, APART, f"text number {n}") for n in range(3)]
    culprit = faults.client.submit(TASK, APART, "fault:exit")
    more = [faults.client.submit(TASK, APART, f"after {n}") for n in range(2)]
    done = faults.client.wait(culprit.id, timeout=90)
    assert done.state == "FAILED" and done.error is not None
    assert done.error.type == "model_failure"
    assert f"the process serving model {APART!r} died (exit code 137)" in done.error.message
    assert done.attempts == 1  # failed where it ran: no redelivery, no poison count
    for job in [*good, *more]:
        ended = faults.client.wait(job.id, timeout=90)
        assert ended.state == "SUCCEEDED", ended.error
    assert all(worker.alive for worker in faults.pool.workers)


def test_a_stuck_pass_fails_at_its_limit_and_its_process_is_killed(faults: FaultEnv) -> None:
    stuck = faults.client.submit(TASK, APART, "fault:sleep=120")
    done = faults.client.wait(stuck.id, timeout=60)
    assert done.state == "FAILED" and done.error is not None and done.error.type == "timeout"
    # The pass holds the model until it is killed (5 s after the stop); then the next runs.
    after = faults.client.submit(TASK, APART, "next in line")
    ended = faults.client.wait(after.id, timeout=60)
    assert ended.state == "SUCCEEDED", ended.error
    assert "after its job stopped; its process" in faults.pool.logs()
