"""Real RabbitMQ and PostgreSQL for the integration tiers, isolated per test session.

URLs come from ``PIPEQ_TEST_BROKER_URL`` and ``PIPEQ_TEST_DATABASE_URL`` (CI sets
both; locally they default to the loopback services). Each session gets its own
PostgreSQL database and RabbitMQ vhost, dropped at the end, so sessions running
side by side never see each other's jobs. Where the variables are set, a
service that cannot be reached fails the run; where they are not, it skips.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import pytest
from sqlalchemy import create_engine, text

from tests.helpers import unique_name, with_path

DEFAULT_BROKER = "amqp://guest:guest@127.0.0.1:5672//"
DEFAULT_DATABASE = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@dataclass(frozen=True)
class Infra:
    broker_url: str
    database_url: str


def _unreachable(what: str, url: str, exc: Exception) -> None:
    message = f"{what} at {url} is not reachable: {exc}"
    if os.environ.get("PIPEQ_TEST_BROKER_URL") or os.environ.get("PIPEQ_TEST_DATABASE_URL"):
        pytest.fail(message + " (PIPEQ_TEST_* is set, so this fails rather than skips)")
    pytest.skip(message)


def _rabbitmqctl(*args: str) -> bool:
    tool = shutil.which("rabbitmqctl")
    if tool is None:
        return False
    done = subprocess.run([tool, *args], capture_output=True, text=True, timeout=60)
    return done.returncode == 0


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    with isolated_services() as services:
        yield services


@contextlib.contextmanager
def isolated_services() -> Iterator[Infra]:
    """A fresh database and vhost on the test services, dropped on exit."""
    from kombu import Connection

    broker = os.environ.get("PIPEQ_TEST_BROKER_URL", DEFAULT_BROKER)
    database = os.environ.get("PIPEQ_TEST_DATABASE_URL", DEFAULT_DATABASE)

    admin = create_engine(database, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text("select 1"))
    except Exception as exc:
        _unreachable("PostgreSQL", database, exc)
    try:
        with Connection(broker, connect_timeout=5) as connection:
            connection.ensure_connection(max_retries=1)
    except Exception as exc:
        _unreachable("RabbitMQ", broker, exc)

    db_name = unique_name("pipeq_test")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{db_name}"'))
    vhost = unique_name("pipeq-test")
    user = urlsplit(broker).username or "guest"
    isolated = _rabbitmqctl("add_vhost", vhost) and _rabbitmqctl(
        "set_permissions", "-p", vhost, user, ".*", ".*", ".*"
    )
    broker_url = with_path(broker, "/" + quote(vhost, safe="")) if isolated else broker
    try:
        yield Infra(broker_url=broker_url, database_url=with_path(database, "/" + db_name))
    finally:
        if isolated:
            _rabbitmqctl("delete_vhost", vhost)
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'))
        admin.dispose()
