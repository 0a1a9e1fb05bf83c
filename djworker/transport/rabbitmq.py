"""djworker's AMQP transport: kombu's py-amqp transport, refusing what it would decompress.

kombu's ``Message`` decompresses a body as it is built, before any content check (see
``intake``). This transport's message marks one that ``intake.refusal`` refuses as a decode
error before kombu can decompress it; the consumer then rejects it like any message that does
not decode. Everything else is kombu's.
"""

from __future__ import annotations

import sys
from typing import Any

from kombu.transport import pyamqp

from djworker.exceptions import InvalidMessage
from djworker.transport import intake

__all__ = ["SSLTransport", "Transport"]


class Message(pyamqp.Message):
    """kombu's AMQP message, born with a decode error if ``intake`` refuses it."""

    def __init__(self, msg: Any, channel: Any = None, **kwargs: Any) -> None:
        properties = msg.properties
        problem = intake.refusal(
            headers=properties.get("application_headers"),
            content_encoding=properties.get("content_encoding"),
            body_size=len(msg.body or b""),
        )
        if problem:
            # kombu skips decompression for a message that has errors already.
            try:
                raise InvalidMessage(problem)
            except InvalidMessage:
                self.errors = [sys.exc_info()]
        super().__init__(msg, channel, **kwargs)


class Channel(pyamqp.Channel):
    Message = Message


class Connection(pyamqp.Connection):
    Channel = Channel


class Transport(pyamqp.Transport):
    """kombu's py-amqp transport with ``Message``'s refusals; same URLs and options."""

    Connection = Connection


class SSLTransport(pyamqp.SSLTransport):
    """``amqps://``: kombu's TLS variant with ``Message``'s refusals."""

    Connection = Connection
