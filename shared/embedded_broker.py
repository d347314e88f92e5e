"""The embedded broker: kombu's filesystem transport, with each message written atomically.

kombu's filesystem transport creates a message's file under its final name and then
writes into it. A consumer that lists the folder in between takes the still-empty file,
fails to decode it, and the Celery worker stops ("Unrecoverable error: JSONDecodeError";
seen here under load, the message lost with it). Here a message is written under a name
no consumer picks (``<name>.msg.part``: consumers take ``<...>.<queue>.msg`` only) and
then renamed to its final name; a rename within a folder is atomic, so consumers see
whole messages or none. Selected by :mod:`shared.celery_app` when the broker is embedded.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

#: What Celery's ``broker_transport`` names to use this transport.
TRANSPORT = "shared.embedded_broker:Transport"


class Channel(filesystem.Channel):  # type: ignore[misc]
    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = f"{final}.part"
        try:
            with open(partial, "wb") as file:
                file.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):  # type: ignore[misc]
    Channel = Channel
