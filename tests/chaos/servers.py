"""Private RabbitMQ and PostgreSQL servers for ``make chaos``, in a scratch folder.

The machine's own RabbitMQ and PostgreSQL are shared and must never be
restarted, so chaos starts its own: a RabbitMQ node with a unique name on free
ports (AMQP and Erlang distribution, loopback only, no plugins) and a
PostgreSQL cluster made by ``initdb`` (trust authentication, loopback, a socket
in the folder). Both can be stopped hard and started again on the same ports
and data, which is what a restart in production looks like; both are stopped
for good on exit.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")
POSTGRES_BIN = Path(os.environ.get("PIPEQ_CHAOS_PG_BIN", "/usr/lib/postgresql/15/bin"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _wait(what: str, ready: callable, timeout: float) -> None:  # type: ignore[valid-type]
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not come up in {timeout:.0f} s")
        time.sleep(0.2)


class PrivateRabbit:
    """A RabbitMQ node of our own: ``start``, ``stop``, ``restart``, ``close``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.node = f"chaos{os.getpid()}{free_port()}@localhost"
        self.port = free_port()
        self.dist_port = free_port()
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = 127.0.0.1:{self.port}\nloopback_users.guest = true\n"
        )
        (folder / "enabled_plugins").write_text("[].\n")
        (folder / "env.conf").write_text("")
        self.env = {
            **os.environ,
            "HOME": str(folder),  # the Erlang cookie lives here, for rabbitmqctl too
            "RABBITMQ_CONF_ENV_FILE": str(folder / "env.conf"),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(folder / "mnesia"),
            "RABBITMQ_LOG_BASE": str(folder / "log"),
            "RABBITMQ_CONFIG_FILE": str(folder / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(folder / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(folder / "rabbit.pid"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    def _ctl(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(RABBITMQ_BIN / "rabbitmqctl"), "-n", self.node, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(self, *, wait: bool = True) -> PrivateRabbit:
        subprocess.run(
            [str(RABBITMQ_BIN / "rabbitmq-server"), "-detached"],
            env=self.env,
            check=True,
            capture_output=True,
            timeout=60,
        )
        if wait:
            self.wait()
        return self

    def wait(self, timeout: float = 180) -> None:
        _wait("RabbitMQ", lambda: port_open(self.port), timeout)
        self._ctl("await_startup", "--timeout", str(int(timeout)), timeout=timeout + 10)

    def stop(self) -> None:
        """Stop the node (it closes every connection); data stays for the next start."""
        if self._ctl("stop", timeout=120).returncode != 0:
            self._kill()
        _wait("RabbitMQ to stop", lambda: not port_open(self.port), 60)

    def restart(self) -> float:
        began = time.monotonic()
        self.stop()
        self.start()
        return time.monotonic() - began

    def _kill(self) -> None:
        pid_file = self.folder / "rabbit.pid"
        if pid_file.exists():
            with contextlib.suppress(ValueError, ProcessLookupError):
                os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)

    def close(self) -> None:
        if port_open(self.port):
            self.stop()


class PrivatePostgres:
    """A PostgreSQL cluster of our own, made by initdb in ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.data = folder / "data"
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:  # initdb refuses root: the cluster belongs to postgres
            shutil.chown(folder, "postgres")
            for parent in folder.parents:  # ... which must be able to reach it
                if parent.stat().st_mode & 0o001 == 0 and parent.owner() == "root":
                    parent.chmod(parent.stat().st_mode | 0o011)

    def _run(self, tool: str, *args: str, timeout: float = 120) -> None:
        command = [str(POSTGRES_BIN / tool), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=timeout, cwd="/")

    def start(self) -> PrivatePostgres:
        if not self.data.exists():
            self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.folder / "postgres.log")
        self._run("pg_ctl", "-D", str(self.data), "-l", log, "-w", "-o", options, "start")
        return self

    def stop(self, mode: str = "immediate") -> None:
        """``immediate`` is a crash: no checkpoint, connections cut, recovery on next start."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self) -> float:
        began = time.monotonic()
        self.stop("immediate")
        self.start()
        return time.monotonic() - began

    def close(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.stop("fast")
