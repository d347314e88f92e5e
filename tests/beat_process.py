"""A real ``pipeq beat`` subprocess for the integration tests, with its log in a file."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import PIPEQ, ServiceProcess


class BeatProcess(ServiceProcess):
    name = "beat"

    def __init__(self, *, env: dict[str, str], log: Path, extra: list[str] | None = None) -> None:
        super().__init__(env=env, log=log)
        self.extra = extra or []

    def start(self, *, ready: str = r"beat active", timeout: float = 60) -> BeatProcess:
        self.spawn([*PIPEQ, "beat", *self.extra])
        self.wait_for(ready, timeout=timeout)
        return self

    def stop(self, *, timeout: float = 30) -> int:
        return super().stop(timeout=timeout)
