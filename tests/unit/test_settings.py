"""Settings: embedded by default, servers by URL, read only when asked."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.errors import ConfigError
from shared.settings import Settings, get_settings, redact_url


def test_embedded_default(embedded_env: Path) -> None:
    settings = get_settings()
    assert settings.embedded_broker
    assert settings.resolved_broker_url == "filesystem://"
    assert settings.resolved_database_url == f"sqlite:///{(embedded_env / 'pipeq.db').resolve()}"
    assert settings.registry_path == (embedded_env / "models.toml").resolve()


def test_server_urls(embedded_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert get_settings().embedded_broker
    monkeypatch.setenv("PIPEQ_BROKER_URL", "amqp://u:secret@rabbit:5672//")
    monkeypatch.setenv("PIPEQ_DATABASE_URL", "postgresql+psycopg://u:pw@db/pipeq")
    monkeypatch.setenv("PIPEQ_MODELS", "/etc/pipeq/models.toml")
    assert get_settings().embedded_broker  # cached: the environment was read once
    get_settings.cache_clear()
    settings = get_settings()
    assert not settings.embedded_broker
    assert settings.resolved_database_url == "postgresql+psycopg://u:pw@db/pipeq"
    assert settings.registry_path == Path("/etc/pipeq/models.toml")


def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPEQ_DATABASE_URL", "mysql://x")
    with pytest.raises(ValueError, match="PIPEQ_DATABASE_URL"):
        Settings()
    monkeypatch.delenv("PIPEQ_DATABASE_URL")
    monkeypatch.setenv("PIPEQ_LOG_LEVEL", "chatty")
    with pytest.raises(ValueError, match="log level"):
        Settings()


def test_passwords_are_redacted() -> None:
    assert redact_url("amqp://guest:guest@host:5672/v") == "amqp://guest:***@host:5672/v"
    assert redact_url("postgresql+psycopg://u@db/x") == "postgresql+psycopg://u@db/x"
    assert "secret" not in redact_url("postgresql+psycopg://u:secret@db:5432/x")


def test_urls_stay_out_of_repr() -> None:
    settings = Settings(broker_url="amqp://u:secret@h//", database_url="postgresql://u:pw@h/x")
    assert "secret" not in repr(settings) and "pw@" not in repr(settings)


def test_secrets_come_from_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db_file, broker_file = tmp_path / "db-url", tmp_path / "broker-url"
    db_file.write_text("postgresql+psycopg://pipeq:s3cret-db@db/pipeq\n")
    broker_file.write_text("amqp://pipeq:s3cret-mq@rabbit:5672/pipeq\n")
    monkeypatch.setenv("PIPEQ_DATABASE_URL_FILE", str(db_file))
    monkeypatch.setenv("PIPEQ_BROKER_URL_FILE", str(broker_file))
    settings = Settings()
    assert settings.resolved_database_url == "postgresql+psycopg://pipeq:s3cret-db@db/pipeq"
    assert settings.resolved_broker_url == "amqp://pipeq:s3cret-mq@rabbit:5672/pipeq"
    assert "s3cret" not in repr(settings)


def test_a_secret_file_is_checked_like_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIPEQ_DATABASE_URL_FILE", str(tmp_path / "absent"))
    with pytest.raises(ValueError, match="cannot read"):
        Settings()
    (tmp_path / "mysql").write_text("mysql://u:p@h/x")
    monkeypatch.setenv("PIPEQ_DATABASE_URL_FILE", str(tmp_path / "mysql"))
    with pytest.raises(ValueError, match="sqlite:// or postgresql"):
        Settings()
    monkeypatch.setenv("PIPEQ_DATABASE_URL", "sqlite:///x.db")
    with pytest.raises(ValueError, match="not both"):
        Settings()


def test_time_limits_merge_over_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPEQ_TIME_LIMITS", '{"nlp": 5, "text-generation": 60}')
    settings = Settings()
    assert settings.time_limit("text-classification", "nlp") == 5
    assert settings.time_limit("text-generation", "nlp") == 60
    assert settings.time_limit("fine-tune", "train") == 12 * 3600
    monkeypatch.setenv("PIPEQ_TIME_LIMITS", '{"nlp": 0}')
    with pytest.raises(ValueError, match="must be > 0"):
        Settings()


def test_bad_settings_are_one_line_naming_each_variable_and_no_password(
    embedded_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIPEQ_DATABASE_URL", "postgres://pipeq:hunter2@db/pipeq")
    monkeypatch.setenv("PIPEQ_HEARTBEAT_SECONDS", "often")
    get_settings.cache_clear()
    with pytest.raises(ConfigError) as refused:
        get_settings()
    message = str(refused.value)
    assert message.startswith("bad settings: PIPEQ_DATABASE_URL must be a sqlite:// or")
    assert "; PIPEQ_HEARTBEAT_SECONDS: Input should be a valid number" in message
    assert "hunter2" not in message and "\n" not in message
    assert refused.value.__cause__ is None and refused.value.__suppress_context__


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "PIPEQ_BROKER_URL",
            "ampq://guest:guest@127.0.0.1:5672/v",
            "PIPEQ_BROKER_URL must be an amqp:// URL (or amqps://), got a ampq:// one",
        ),
        ("PIPEQ_BROKER_URL", "http://rabbit:15672", "got a http:// one"),
        ("PIPEQ_BROKER_URL", "localhost", "must be an amqp:// URL, like amqp://user:pass@"),
        ("PIPEQ_TIME_LIMITS", "{nlp", "PIPEQ_TIME_LIMITS: not JSON"),
        (
            "PIPEQ_HEARTBEAT_TIMEOUT",
            "15s",  # live jobs beat every 10 s: one late beat, and beat failed them as lost
            "PIPEQ_HEARTBEAT_TIMEOUT (15s) must be longer than two heartbeats",
        ),
        (
            "PIPEQ_DATABASE_URL_FILE",
            "/dev/null",
            "set PIPEQ_DATABASE_URL or PIPEQ_DATABASE_URL_FILE",
        ),
    ],
)
def test_settings_refused_in_one_line(
    embedded_env: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv("PIPEQ_DATABASE_URL", "sqlite:///x.db")
    monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    with pytest.raises(ConfigError, match=r"^bad settings: ") as refused:
        get_settings()
    assert message in str(refused.value)
    get_settings.cache_clear()


def test_a_server_database_with_the_embedded_broker_is_warned_about(
    embedded_env: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PIPEQ_DATABASE_URL", "postgresql+psycopg://pipeq@db/pipeq")
    get_settings.cache_clear()
    get_settings()
    assert "PIPEQ_BROKER_URL is unset: jobs go to the embedded broker in" in caplog.text
    caplog.clear()
    monkeypatch.setenv("PIPEQ_BROKER_URL", "amqp://guest@rabbit//")
    get_settings.cache_clear()
    get_settings()
    assert caplog.text == ""  # both on servers
    monkeypatch.delenv("PIPEQ_DATABASE_URL")
    get_settings.cache_clear()
    get_settings()
    assert "PIPEQ_DATABASE_URL is not: job states go to sqlite:///" in caplog.text
    get_settings.cache_clear()
