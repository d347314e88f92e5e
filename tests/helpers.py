"""Test helpers: real worker processes, and isolated databases and vhosts per session."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parents[1]
PIPEQ = [sys.executable, "-m", "services.cli"]


def pipeq(
    *args: str, env: dict[str, str], timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run the ``pipeq`` CLI as a user would, in a fresh process."""
    return subprocess.run(
        [*PIPEQ, *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
    )


def service_env(
    broker_url: str, database_url: str, *, models: Path, home: Path, **extra: str
) -> dict[str, str]:
    """The environment of pipeq processes on these services, their database migrated: this
    process's own less any ``PIPEQ_`` setting, the services, the registry, the home folder,
    no model downloads, and ``extra`` over them."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PIPEQ_")}
    env.update(
        PIPEQ_BROKER_URL=broker_url,
        PIPEQ_DATABASE_URL=database_url,
        PIPEQ_MODELS=str(models),
        PIPEQ_HOME=str(home),
        HF_HUB_OFFLINE="1",
    )
    env.update(extra)
    pipeq("db", "upgrade", env=env)
    return env


class ServiceProcess:
    """A real pipeq service (``pipeq worker``, ``beat``, ``gateway``...) in its own process
    group, its output appended to a log file; :meth:`log` reads what this start wrote."""

    name = "service"
    #: SIGTERM the whole process group (a server with worker processes of its own).
    signal_group = False

    def __init__(self, *, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log_path = log
        self.process: subprocess.Popen[bytes] | None = None
        self._offset = 0

    def spawn(self, args: list[str]) -> None:
        self._offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                args,
                env=self.env,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log(self) -> str:
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[self._offset :]

    def exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def wait_for(self, pattern: str, *, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if re.search(pattern, self.log()):
                return
            if self.exited():
                assert self.process is not None
                raise RuntimeError(f"{self.name} exited ({self.process.returncode}):\n{self.log()}")
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} log never matched {pattern!r}:\n{self.log()[-4000:]}")

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, *, timeout: float = 60) -> int:
        """SIGTERM, then SIGKILL after ``timeout``; the exit status (-9 if it was killed)."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        if self.signal_group:
            os.killpg(self.process.pid, signal.SIGTERM)
        else:
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


class WorkerProcess(ServiceProcess):
    """A real ``pipeq worker`` subprocess, with its log in a file."""

    name = "worker"

    def __init__(
        self,
        *,
        queues: list[str],
        env: dict[str, str],
        log: Path,
        extra: list[str] | None = None,
        command: list[str] | None = None,
        device: str = "cpu",
    ) -> None:
        super().__init__(env=env, log=log)
        self.queues = queues
        self.device = device
        self.extra = extra or []
        # ``python -m tests.faults`` runs the same worker with fault-injecting handlers.
        self.command = command or [*PIPEQ, "worker"]

    def start(self, *, timeout: float = 120, wait: bool = True) -> WorkerProcess:
        args = [*self.command, "--device", self.device, *self.extra]
        for queue in self.queues:
            args += ["--queue", queue]
        self.spawn(args)
        if wait:
            self.wait_for(r" ready\.", timeout=timeout)
        return self


def with_path(url: str, path: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=path))


def unique_name(prefix: str) -> str:
    return f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
