"""The producer side of kombu: connections, queue declarations and publishing.

Every message goes through kombu whatever the broker. Connections are kept per process and per
thread (kombu connections are not thread-safe, and must not cross a fork).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from kombu import Connection, Exchange, Producer, Queue

from djworker import message
from djworker.broker_conf import redact_url
from djworker.broker_schemes import BrokerConnection, profile_for, scheme_of
from djworker.exceptions import PublishInterrupted
from djworker.log_safety import get_logger
from djworker.message import Envelope

__all__ = ["Broker", "get_broker", "redact_url", "set_broker"]

logger = get_logger(__name__)

DEFAULT_EXCHANGE = Exchange("", type="direct")
PUBLISH_RETRY_POLICY = {
    "max_retries": 3,
    "interval_start": 0,
    "interval_step": 0.5,
    "interval_max": 2,
}


class Broker:
    """Publishes envelopes and builds the kombu objects the consumer needs."""

    def __init__(self, *, url: str, transport_options: Mapping[str, Any] | None = None) -> None:
        self.url = url
        self.scheme = scheme_of(url.split(";")[0])
        self.profile = profile_for(url)
        self.transport_options = self.profile.options(transport_options)
        self._local = threading.local()
        #: whether this URL's channels are ``BatchChannel``s: known at the first publish
        self._batches: bool | None = None

    def connection(self) -> Connection:
        """A new kombu connection on djworker's transport for the URL; the caller closes it."""
        return BrokerConnection(self.url, transport_options=self.transport_options)

    def queue(self, name: str) -> Queue:
        return Queue(
            name,
            exchange=DEFAULT_EXCHANGE,
            routing_key=name,
            durable=True,
            max_priority=message.MAX_PRIORITY,
        )

    def broker_priority(self, priority: int) -> int:
        return self.profile.broker_priority(priority)

    def _producer(self) -> Producer:
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            # A fork copied the parent's connection object: never use it, never close it.
            local.pid = os.getpid()
            local.connection = None
        if local.connection is None:
            local.connection = self.connection()
            local.producer = producer = Producer(local.connection, auto_declare=False)
            local.declared = set()
            local.declared_on = None
            # Wrapped once per connection: kombu's retry wrapper is the same for every publish.
            local.publish_run = local.connection.ensure(
                producer, self._publish_run, **PUBLISH_RETRY_POLICY
            )
        return local.producer  # type: ignore[no-any-return]

    def _declare(self, producer: Producer, queue: str) -> None:
        """Declare ``queue`` once per channel (kombu would build and bind it per publish).

        Called inside the retried publish: a reconnect brings a new channel, on which every
        queue is declared again. RabbitMQ drops a message sent to a queue it does not have, and
        a broker that came back without its queues has none until they are declared.
        """
        local = self._local
        channel = producer.channel
        if local.declared_on is not channel:
            local.declared = set()
            local.declared_on = channel
        declared: set[str] = local.declared
        if queue not in declared:
            producer.maybe_declare(self.queue(queue))
            declared.add(queue)

    def publish(self, envelope: Envelope, *, validated: bool = False) -> None:
        """Publish one envelope; ``validated``: it comes from ``message.build`` unchanged."""
        if not validated:
            message.validate(envelope)
        producer = self._producer()
        try:
            if self._batching(producer):
                # A run of one: skips kombu's per-publish routing, which costs more than the
                # round trip itself on these channels; the message is the same.
                self._local.publish_run(producer, envelope["queue"], [envelope])
                return
            publish_one = producer.connection.ensure(
                producer, self._publish_one, **PUBLISH_RETRY_POLICY
            )
            publish_one(producer, envelope)
        except Exception:
            self.close()  # the next publish starts from a fresh connection
            raise

    def _batching(self, producer: Producer) -> bool:
        """Whether ``producer``'s channel writes a run of messages in one round trip.

        Asked once per broker (a protocol check costs as much as a small publish); every
        channel of one URL is of the same transport.
        """
        if self._batches is None:
            self._batches = isinstance(producer.channel, BatchChannel)
        return self._batches

    def _publish_one(self, producer: Producer, envelope: Envelope) -> None:
        self._declare(producer, envelope["queue"])
        producer.publish(
            envelope,
            exchange="",
            routing_key=envelope["queue"],
            serializer="json",
            priority=self.broker_priority(envelope["priority"]),
            headers=_headers(envelope),
            delivery_mode=2,
        )

    def publish_many(self, envelopes: Sequence[Envelope]) -> None:
        """Publish envelopes ``message.build`` made, in order; ``PublishInterrupted`` on failure.

        On ``django://`` and Redis each run of envelopes for one queue is one round trip, all
        or none (see the channels' ``publish_many``); on RabbitMQ they are published one by
        one on the same channel. ``PublishInterrupted.published`` counts the envelopes that
        went out before the failure, which is its cause.
        """
        producer = self._producer()
        published = 0
        try:
            for queue, run in _runs_by_queue(envelopes):
                if self._batching(producer):
                    self._local.publish_run(producer, queue, run)
                    published += len(run)
                    continue
                for envelope in run:
                    self.publish(envelope, validated=True)
                    published += 1
        except Exception as exc:
            self.close()
            raise PublishInterrupted(
                f"published {published} of {len(envelopes)} messages", published=published
            ) from exc

    def _publish_run(self, producer: Producer, queue: str, envelopes: list[Envelope]) -> None:
        self._declare(producer, queue)
        channel = producer.channel  # a retry after a reconnect brings a new one
        messages = []
        for envelope in envelopes:
            messages.append(
                channel.prepare_message(
                    # What kombu's json serializer writes, without its per-call set-up: an
                    # envelope holds only JSON types (``message.validate``).
                    json.dumps(envelope),
                    self.broker_priority(envelope["priority"]),
                    message.CONTENT_TYPE,
                    "utf-8",
                    _headers(envelope),
                    {"delivery_mode": 2},
                )
            )
        channel.publish_many(queue, messages)

    def close(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None and getattr(self._local, "pid", None) == os.getpid():
            try:
                connection.release()
            except Exception:  # pragma: no cover - closing a broken connection
                logger.debug("error closing producer connection", exc_info=True)
        self._local.connection = None


@runtime_checkable
class BatchChannel(Protocol):
    """A kombu channel of djworker's that writes many messages of one queue in one round trip."""

    def publish_many(self, queue: str, messages: Sequence[dict[str, Any]]) -> None: ...


def _runs_by_queue(envelopes: Sequence[Envelope]) -> list[tuple[str, list[Envelope]]]:
    """The envelopes in order, in runs of one queue each."""
    runs: list[tuple[str, list[Envelope]]] = []
    for envelope in envelopes:
        if runs and runs[-1][0] == envelope["queue"]:
            runs[-1][1].append(envelope)
        else:
            runs.append((envelope["queue"], [envelope]))
    return runs


def _headers(envelope: Envelope) -> dict[str, Any]:
    return {"eta": envelope["eta"]} if envelope.get("eta") else {}


def probe(connection: Connection) -> None:
    """One cheap round trip that raises the transport's connection error if the broker is gone.

    For a consumer that is not reading from the broker (its prefetch window is full), so that
    a lost connection is noticed before a freed slot starts a message the broker will deliver
    again.
    """
    channel = connection.default_channel
    conn_or_acquire = getattr(channel, "conn_or_acquire", None)
    if conn_or_acquire is not None:  # redis: the channel's own client, never the BRPOP one
        with conn_or_acquire() as client:
            client.ping()
        return
    alias = getattr(connection.transport, "alias", None)
    if connection.transport.driver_type == "sql" and isinstance(alias, str):  # django://
        from django.db import connections

        from djworker.transport.database import database_errors

        with database_errors(alias), connections[alias].cursor() as cursor:
            cursor.execute("SELECT 1")
        return
    # AMQP: reading the socket finds a closed connection; a full window brings no message.
    with contextlib.suppress(TimeoutError):
        connection.drain_events(timeout=0.001)


_broker: Broker | None = None
_broker_lock = threading.Lock()


def get_broker() -> Broker:
    """The process-wide ``Broker`` built from ``settings.DJWORKER`` (read on first use)."""
    global _broker
    if _broker is None:
        with _broker_lock:
            if _broker is None:
                from djworker.conf import DEFAULT_BROKER_URL, OPTIONS_BY_FIELD, read_settings

                resolved = {"broker_url": DEFAULT_BROKER_URL, **read_settings()}
                option = OPTIONS_BY_FIELD["broker_url"]
                from_env = os.environ.get(option.env_var)
                if from_env:
                    resolved["broker_url"] = option.parse(from_env, name=option.env_var)
                _broker = Broker(
                    url=resolved["broker_url"],
                    transport_options=resolved.get("broker_transport_options"),
                )
    return _broker


def set_broker(broker: Broker | None) -> None:
    """Use this broker for publishing in this process (the worker shares its own)."""
    global _broker
    _broker = broker
