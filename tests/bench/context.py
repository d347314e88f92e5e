"""What every benchmark part gets: real service URLs (isolated), a scratch folder, tiny models."""

from __future__ import annotations

import contextlib
import os
import statistics
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.helpers import REPO


@dataclass
class BenchContext:
    broker_url: str
    database_url: str
    folder: Path
    _cache: dict[str, Any] = field(default_factory=dict)

    def env(self, **extra: str) -> dict[str, str]:
        """A pipeq process environment for these services."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("PIPEQ_")}
        env.update(
            PIPEQ_BROKER_URL=self.broker_url,
            PIPEQ_DATABASE_URL=self.database_url,
            PIPEQ_HOME=str(self.folder / "home"),
            HF_HUB_OFFLINE="1",
            **extra,
        )
        return env

    def tiny_registry(self) -> Path:
        if "tiny" not in self._cache:
            from services.worker.tiny import build_all

            self._cache["tiny"] = build_all(self.folder / "tiny")
        path: Path = self._cache["tiny"]
        return path


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) of ``values``, by linear interpolation."""
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


@contextlib.contextmanager
def bench_context(folder: Path) -> Iterator[BenchContext]:
    """Isolated database and vhost on the test services (PIPEQ_TEST_* or loopback)."""
    import pytest

    from tests.infra import isolated_services

    try:
        with isolated_services() as urls:
            yield BenchContext(urls.broker_url, urls.database_url, folder)
    except pytest.skip.Exception as exc:  # services absent
        raise SystemExit(f"make bench needs RabbitMQ and PostgreSQL: {exc}") from None


__all__ = ["REPO", "BenchContext", "bench_context", "percentile"]
