"""A real ``pipeq gateway`` subprocess on a free loopback port, for tests and benchmarks."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import httpx

from tests.helpers import PIPEQ, ServiceProcess, pipeq


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def create_key(tenant: str, env: dict[str, str], *, cli: bool = False) -> dict[str, str]:
    """A key for ``tenant``: id, tenant, key, webhook_secret (as ``pipeq keys create --json``).

    In this process by default (seconds faster); through the CLI with ``cli=True``.
    """
    if cli:
        made: dict[str, str] = json.loads(pipeq("keys", "create", tenant, "--json", env=env).stdout)
        return made
    from shared.db import keys
    from shared.db.engine import session_scope

    with session_scope(env["PIPEQ_DATABASE_URL"]) as session:
        new = keys.create_key(session, tenant)
    return {
        "id": new.id,
        "tenant": new.tenant,
        "key": new.key,
        "webhook_secret": new.webhook_secret,
    }


class GatewayProcess(ServiceProcess):
    """``pipeq gateway`` in its own process group, its log in a file."""

    name = "gateway"
    signal_group = True

    def __init__(self, *, env: dict[str, str], log: Path, workers: int = 1) -> None:
        super().__init__(env=env, log=log)
        self.workers = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self, *, timeout: float = 60) -> GatewayProcess:
        self.spawn([*PIPEQ, "gateway", "--port", str(self.port), "--workers", str(self.workers)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.exited():
                assert self.process is not None
                raise RuntimeError(f"gateway exited ({self.process.returncode}):\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"gateway never became healthy:\n{self.log()[-4000:]}")

    def stop(self, *, timeout: float = 30) -> int:
        return super().stop(timeout=timeout)
