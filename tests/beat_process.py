"""A real ``pipeq beat`` subprocess for the integration tests, with its log in a file."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

from tests.helpers import PIPEQ, REPO


class BeatProcess:
    def __init__(self, *, env: dict[str, str], log: Path, extra: list[str] | None = None) -> None:
        self.env = env
        self.log_path = log
        self.extra = extra or []
        self.process: subprocess.Popen[bytes] | None = None
        self._offset = 0

    def start(self, *, ready: str = r"beat active", timeout: float = 60) -> BeatProcess:
        self._offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [*PIPEQ, "beat", *self.extra],
                env=self.env,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.wait_for(ready, timeout=timeout)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[self._offset :]

    def wait_for(self, pattern: str, *, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if re.search(pattern, self.log()):
                return
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"beat exited ({self.process.returncode}):\n{self.log()}")
            time.sleep(0.1)
        raise TimeoutError(f"beat log never matched {pattern!r}:\n{self.log()[-4000:]}")

    def stop(self, *, timeout: float = 30) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return -9

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
