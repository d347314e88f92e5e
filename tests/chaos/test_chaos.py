"""A smaller ``make chaos`` in the suite: a few hundred jobs through worker kills, a RabbitMQ
restart and a PostgreSQL crash, on private servers; nothing lost, run twice or stuck."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.chaos.run import ChaosConfig, run
from tests.chaos.servers import POSTGRES_BIN, RABBITMQ_BIN


def test_no_job_is_lost_duplicated_or_stuck() -> None:
    needed = [RABBITMQ_BIN / "rabbitmq-server", POSTGRES_BIN / "initdb"]
    missing = [str(path) for path in needed if not path.exists()]
    if missing or (os.geteuid() == 0 and shutil.which("runuser") is None):
        message = f"chaos needs RabbitMQ and PostgreSQL binaries: missing {missing}"
        if os.environ.get("PIPEQ_TEST_BROKER_URL"):
            pytest.fail(message)
        pytest.skip(message)
    result = run(
        ChaosConfig(
            jobs=240,
            rate=8,
            kills=(0.1, 0.3, 0.6, 0.85),
            rabbit_restart_at=0.4,
            postgres_restart_at=0.7,
            settle_seconds=240,
            seed=11,
        )
    )
    assert result["submitted"] == 240 and result["rows"] >= 240
    assert (result["lost"], result["duplicated"], result["stuck"]) == (0, 0, 0), result
    assert result["unexpected"] == 0, result["unexpected_examples"]
    assert result["terminal_writes"] == result["rows"]  # each job ended exactly once
    assert result["worker_kills"] == 4 and result["worker_restarts"] >= 4
    assert result["failed_by_type"].get("poison") == 1  # the one poison job, no bystander
    assert "rabbitmq_restart_seconds" in result and "postgresql_restart_seconds" in result
