"""Beat's settings read durations as people write them, and "never" for a retention."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from shared.errors import ConfigError
from shared.settings import get_settings


def test_durations_and_never(embedded_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = get_settings()
    assert defaults.retain_succeeded == timedelta(days=7)
    assert defaults.retain_failed == timedelta(days=30)
    assert defaults.heartbeat_timeout == timedelta(minutes=10)
    monkeypatch.setenv("PIPEQ_RETAIN_SUCCEEDED", "12h")
    monkeypatch.setenv("PIPEQ_RETAIN_CANCELLED", "never")
    monkeypatch.setenv("PIPEQ_HEARTBEAT_TIMEOUT", "90")
    monkeypatch.setenv("PIPEQ_BEAT_POLL_INTERVAL", "0.2s")
    get_settings.cache_clear()
    settings = get_settings()
    assert settings.retain_succeeded == timedelta(hours=12)
    assert settings.retain_cancelled is None
    assert settings.heartbeat_timeout == timedelta(seconds=90)
    assert settings.beat_poll_interval == timedelta(seconds=0.2)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PIPEQ_RETAIN_FAILED", "a week"),
        ("PIPEQ_HOUSEKEEPING_INTERVAL", "0"),
        ("PIPEQ_HEARTBEAT_TIMEOUT", "never"),
    ],
)
def test_bad_durations_stop_the_process(
    embedded_env: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    with pytest.raises(ConfigError, match=f"^bad settings: {name}"):
        get_settings()
