"""A real ``pipeq gateway`` for the session, on the session's database and vhost.

Its settings are tuned for tests: keys are looked up on every request (so a
revocation shows at once), and webhooks and event streams poll fast.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.gateway_process import GatewayProcess, create_key
from tests.integration.gateway.helpers import LIMIT


@pytest.fixture(scope="session")
def gateway_env(pipeq_env: dict[str, str]) -> dict[str, str]:
    return {
        **pipeq_env,
        "PIPEQ_KEY_CACHE_SECONDS": "0",
        "PIPEQ_EVENTS_POLL_SECONDS": "0.05",
        "PIPEQ_WEBHOOK_POLL_SECONDS": "0.1",
        "PIPEQ_WEBHOOK_BACKOFF_SECONDS": "0.3",
        "PIPEQ_WEBHOOK_TIMEOUT_SECONDS": "5",
        "PIPEQ_MAX_MESSAGE_BYTES": str(LIMIT),
    }


@pytest.fixture(scope="session")
def gateway(
    gateway_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    log = tmp_path_factory.mktemp("gateway") / "gateway.log"
    process = GatewayProcess(env=gateway_env, log=log).start()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def acme(gateway_env: dict[str, str]) -> dict[str, str]:
    return create_key("acme", gateway_env)


@pytest.fixture(scope="session")
def globex(gateway_env: dict[str, str]) -> dict[str, str]:
    return create_key("globex", gateway_env)


def _client(gateway: GatewayProcess, key: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=gateway.url, headers=headers, timeout=30)


@pytest.fixture
def api(gateway: GatewayProcess, acme: dict[str, str]) -> Iterator[httpx.Client]:
    """acme's client."""
    with _client(gateway, acme["key"]) as client:
        yield client


@pytest.fixture
def other(gateway: GatewayProcess, globex: dict[str, str]) -> Iterator[httpx.Client]:
    """globex's client: another tenant."""
    with _client(gateway, globex["key"]) as client:
        yield client


@pytest.fixture
def anonymous(gateway: GatewayProcess) -> Iterator[httpx.Client]:
    with _client(gateway, None) as client:
        yield client
