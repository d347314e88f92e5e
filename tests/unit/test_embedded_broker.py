"""The embedded broker never hands a consumer a message that is still being written."""

from __future__ import annotations

from pathlib import Path
from queue import Empty
from typing import Any

import pytest
from kombu import Connection

from shared import embedded_broker
from shared.celery_app import make_app
from shared.settings import Settings


def _channel(folder: Path) -> Any:
    options = {"data_folder_in": str(folder), "data_folder_out": str(folder)}
    connection = Connection(transport=embedded_broker.Transport, transport_options=options)
    return connection.default_channel


def test_a_message_being_written_is_not_seen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    producer, consumer = _channel(tmp_path), _channel(tmp_path)
    seen_while_writing: list[Any] = []
    real = embedded_broker.str_to_bytes

    def write_slowly(text: str) -> bytes:  # called with the message's file already open
        try:
            seen_while_writing.append(consumer._get("nlp"))
        except Empty:
            seen_while_writing.append(Empty)
        encoded: bytes = real(text)
        return encoded

    monkeypatch.setattr(embedded_broker, "str_to_bytes", write_slowly)
    producer._put("nlp", {"body": "hello"})
    assert seen_while_writing == [Empty]
    assert consumer._get("nlp") == {"body": "hello"}
    assert list(tmp_path.iterdir()) == []


def test_the_embedded_default_uses_it(tmp_path: Path) -> None:
    app = make_app(Settings(home=tmp_path))
    with app.connection_for_write() as connection:
        assert isinstance(connection.transport, embedded_broker.Transport)
