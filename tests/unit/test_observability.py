"""Metrics, job ids in logs and task events, in process (the real worker: tests/integration)."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from services.worker import metrics
from shared.celery_app import make_app
from shared.logs import JobContext, JsonFormatter, job_logging
from shared.settings import Settings


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(JobContext())
    logger = logging.getLogger("pipeq.test.observability")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_job_logging_names_the_job_until_it_ends(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    logger.info("before")
    with job_logging("job-1"):
        logger.info("inside")
        with job_logging("job-2"):
            logger.info("nested")
        logger.info("explicit", extra={"job_id": "other"})
    logger.info("after")
    ids = [entry.get("job_id") for entry in lines(stream)]
    assert ids == [None, "job-1", "job-2", "other", None]


def test_celerys_task_lines_get_the_task_id(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    logger.info("Task %(name)s[%(id)s] received", {"name": "pipeq.run_job", "id": "abc"})
    logger.info("a mapping without a task: %(x)s", {"x": 1})
    ids = [entry.get("job_id") for entry in lines(stream)]
    assert ids == ["abc", None]


@pytest.mark.parametrize(("root", "shown"), [(logging.INFO, False), (logging.DEBUG, True)])
def test_celerys_line_per_task_shows_only_at_debug(root: int, shown: bool) -> None:
    from services.worker.main import CELERY_TASK_LOGGERS, quiet_celery_task_lines

    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in CELERY_TASK_LOGGERS)]
    before = [logger.level for logger in loggers]
    try:
        loggers[0].setLevel(root)
        quiet_celery_task_lines()
        for logger in loggers[1:]:
            assert logger.isEnabledFor(logging.INFO) is shown
            assert logger.isEnabledFor(logging.WARNING)
    finally:
        for logger, level in zip(loggers, before, strict=True):
            logger.setLevel(level)


def test_task_events_follow_the_setting_and_never_run_embedded(tmp_path: Path) -> None:
    amqp = "amqp://guest:guest@localhost:5672//"
    on = make_app(Settings(broker_url=amqp, task_events=True)).conf
    assert on.worker_send_task_events is True and on.task_send_sent_event is True
    off = make_app(Settings(broker_url=amqp)).conf  # the default
    assert off.worker_send_task_events is False and off.task_send_sent_event is False
    embedded = make_app(Settings(home=tmp_path, task_events=True)).conf
    assert embedded.worker_send_task_events is False


def test_a_clock_behind_counts_as_no_wait() -> None:
    def total(name: str) -> float:
        value = REGISTRY.get_sample_value(f"{name}_sum", {"task": "summarization"})
        return value or 0.0

    created = datetime(2026, 1, 1, tzinfo=UTC)
    waited, ended = (
        total("pipeq_worker_job_queue_wait_seconds"),
        total("pipeq_worker_job_end_to_end_seconds"),
    )
    metrics.job_ended(
        "summarization",
        "SUCCEEDED",
        created_at=created + timedelta(seconds=5),  # the producer's clock runs ahead
        started_at=created,
        now=created + timedelta(seconds=2),
    )
    assert total("pipeq_worker_job_queue_wait_seconds") == waited
    assert total("pipeq_worker_job_end_to_end_seconds") == ended
    assert total("pipeq_worker_job_run_seconds") >= 2.0


def test_no_gpu_series_without_cuda() -> None:
    registry = CollectorRegistry()
    registry.register(metrics.GpuMemory())
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: see test_gpu_memory_per_device")
    assert b"pipeq_worker_gpu" not in generate_latest(registry)


def test_gpu_memory_per_device() -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU (none on this machine)")
    registry = CollectorRegistry()
    registry.register(metrics.GpuMemory())
    tensor = torch.ones(64, 2**20, device="cuda:0")  # 256 MiB
    text = generate_latest(registry).decode()
    (line,) = [
        line
        for line in text.splitlines()
        if line.startswith('pipeq_worker_gpu_memory_allocated_bytes{device="cuda:0"}')
    ]
    assert float(line.rsplit(" ", 1)[1]) >= tensor.numel() * 4
    assert 'pipeq_worker_gpu_memory_total_bytes{device="cuda:0"}' in text


def test_the_readme_lists_every_metric(embedded_env: Path) -> None:
    """README, "What to watch": every worker and backlog metric, and none that does not exist."""
    from services.gateway.backlog import Backlog
    from shared.db.migrate import upgrade
    from shared.settings import get_settings

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("### What to watch") : readme.index("## Tests")]
    listed = set(re.findall(r"`(pipeq_(?:worker|jobs)\w*)", section))
    names = {
        family.name + ("_total" if family.type == "counter" else "")
        for value in vars(metrics).values()
        if isinstance(value, Counter | Gauge | Histogram)
        for family in value.describe()
    }
    url = get_settings().resolved_database_url
    upgrade(url)
    names |= {family.name for family in Backlog(url).collect()}
    # GPU series exist only where CUDA runs: their names are read from the collector's source
    source = Path(metrics.__file__).read_text()
    gpu = {f"pipeq_worker_gpu_memory_{s}_bytes" for s in ("allocated", "reserved", "total")}
    assert all(f'"{name}"' in source for name in gpu)
    assert "pipeq_worker_gpu_memory_allocated_bytes" in listed  # the others by shorthand
    gpu &= listed
    assert listed - gpu == names
