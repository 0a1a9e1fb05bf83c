"""``ConsumerConnection``: the consumer's side of its broker connection.

Connecting (retrying an unreachable broker, giving up when the worker stops or when the broker
refuses us), consuming the worker's queues, pausing and resuming, adding and cancelling queues.
``Consumer`` (``consumer.py``) builds on it: it decides what each message becomes, runs the loop
and sets the prefetch window. Only the consumer's thread calls these methods, since only that
thread may touch kombu.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import Any

import kombu
from kombu.message import Message

from djworker.broker import Broker, redact_url
from djworker.delivery import reject_undecodable
from djworker.exceptions import ConfigurationError
from djworker.log_safety import get_logger

logger = get_logger(__name__)


class _StopConnecting(Exception):
    """Raised inside kombu's connection retries to abandon them when the worker is stopping."""


class _PasswordRefused(Exception):
    """Raised inside kombu's connection retries to abandon them when the password is refused."""


def password_refused(exc: BaseException) -> bool:
    """Whether ``exc`` is a broker refusing our password (or asking for one we did not give).

    Redis's client files that under connection errors, so kombu would retry it forever as if
    the server were down. RabbitMQ's refusal is not retried by kombu to begin with.
    """
    try:
        from redis.exceptions import AuthenticationError
    except ImportError:  # no Redis client: no Redis broker either
        return False
    return isinstance(exc, AuthenticationError)


class ConsumerConnection(ABC):
    """The broker connection of a consumer, and what it consumes; subclassed by ``Consumer``."""

    def __init__(self, *, broker: Broker, queues: Iterable[str], paused: bool) -> None:
        self.broker = broker
        #: paused by an operator: start no new message (may be set from any thread)
        self.hold = paused
        self.queues = list(queues)
        self.consuming = False
        self.connection: kombu.Connection | None = None
        self._kombu_consumer: kombu.Consumer | None = None

    @abstractmethod
    def _on_message(self, body: Any, msg: Message) -> None:
        """Handle one received message (kombu's consumer callback)."""

    @abstractmethod
    def update_prefetch(self) -> None:
        """Set the prefetch window on a new consumer."""

    def connect(
        self, should_stop: Callable[[], bool] = lambda: False, *, at_start: bool = True
    ) -> bool:
        """Connect and start consuming; False if ``should_stop`` said so before the broker answered.

        kombu calls the callback at least every second while it waits to retry, so a stop
        signal is honoured even while the broker is unreachable. At start a broker that refuses
        our password raises ``ConfigurationError``; on a reconnect (``at_start=False``) it is
        retried like an outage, since the running tasks would be lost by stopping and the
        password may be put back.
        """
        url = redact_url(self.broker.url)

        def give_up_if_stopping() -> None:
            if should_stop():
                raise _StopConnecting

        def retry_unless_refused(exc: Exception, interval: float) -> None:
            if not password_refused(exc):
                logger.warning("broker unreachable (%s); retrying in %.1fs", exc, interval)
            elif at_start:
                raise _PasswordRefused from exc
            else:
                logger.warning(
                    "the broker at %s refused the password (%s); retrying in %.1fs",
                    url,
                    exc,
                    interval,
                )

        self.connection = self.broker.connection()
        try:
            self.connection.ensure_connection(
                errback=retry_unless_refused, max_retries=None, callback=give_up_if_stopping
            )
        except _StopConnecting:
            logger.warning("stop requested before the broker could be reached")
            return False
        except _PasswordRefused as refused:
            raise ConfigurationError(
                f"the broker at {url} refused the password ({refused.__cause__}): an "
                "authentication error is not retried; correct the password in the broker URL"
            ) from refused.__cause__
        except (*self.connection.connection_errors, *self.connection.channel_errors) as exc:
            # Retried forever above unless the broker answered and refused us (a wrong
            # password on RabbitMQ, a missing virtual host): no retry can fix that.
            raise ConfigurationError(
                f"the broker at {url} refused the connection: {type(exc).__name__}: {exc}"
            ) from exc
        channel = self.connection.default_channel
        self._kombu_consumer = kombu.Consumer(
            channel,
            queues=[self.broker.queue(name) for name in self.queues],
            callbacks=[self._on_message],
            accept=["json"],
            on_decode_error=reject_undecodable,
        )
        self.update_prefetch()
        if not self.hold:
            self.resume()
        return True

    @property
    def recoverable_errors(self) -> tuple[type[BaseException], ...]:
        """Errors after which a new broker connection lets the worker carry on."""
        if self.connection is None:
            return ()
        return (
            *self.connection.recoverable_connection_errors,
            *self.connection.recoverable_channel_errors,
        )

    def close(self) -> None:
        """Close the connection; the broker gets back any message not acknowledged."""
        if self.connection is not None:
            try:
                self.connection.release()
            except Exception:
                logger.warning("error closing the broker connection", exc_info=True)
            self.connection = None

    def pause(self) -> None:
        if self.consuming and self._kombu_consumer is not None:
            try:
                self._kombu_consumer.cancel()
            except self.recoverable_errors as exc:
                # A dead connection consumes nothing anyway; the next iteration reconnects.
                logger.warning("could not cancel consuming on a lost connection: %s", exc)
        self.consuming = False

    def resume(self) -> None:
        if not self.consuming and self._kombu_consumer is not None:
            self._kombu_consumer.consume()
        self.consuming = True

    def add_queue(self, name: str) -> None:
        if name in self.queues or self._kombu_consumer is None:
            return
        self.queues.append(name)
        self._kombu_consumer.add_queue(self.broker.queue(name))
        if self.consuming:
            self._kombu_consumer.consume()

    def cancel_queue(self, name: str) -> None:
        if name not in self.queues or self._kombu_consumer is None:
            return
        self.queues.remove(name)
        self._kombu_consumer.cancel_by_queue(name)
