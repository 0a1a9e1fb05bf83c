"""``NotifyListener`` on real PostgreSQL: LISTEN on the worker consumer's own connection.

A worker's consumer thread (``worker_connections.keep_open(listen=True)``) LISTENs on its Django
connection instead of opening one more session; anywhere else the listener opens its own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from django.db import connection as db_connection
from django.db import connections

from djworker import worker_connections
from djworker.transport.listener import NotifyListener, Wake, notify_channel

pytestmark = pytest.mark.django_db(transaction=True)

QUEUE = "listener-tests"
T = TypeVar("T")


@pytest.fixture(autouse=True)
def _postgres_only() -> None:
    if db_connection.vendor != "postgresql":
        pytest.skip("LISTEN/NOTIFY exists on PostgreSQL only; other databases poll")


@pytest.fixture
def in_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process is a worker (without the fork hooks ``enable()`` installs)."""
    monkeypatch.setattr(worker_connections, "_enabled", True)


@pytest.fixture
def notify() -> Iterator[Callable[[str], None]]:
    """Sends a NOTIFY for a queue from a session of its own, as a publisher does."""
    import psycopg

    params = db_connection.get_connection_params()
    for django_only in ("cursor_factory", "context"):
        params.pop(django_only, None)
    sender = psycopg.connect(**params, autocommit=True)
    yield lambda queue: sender.execute("SELECT pg_notify(%s, '')", [notify_channel(queue)])
    sender.close()


def on_own_thread(fn: Callable[[], T]) -> T:
    """Run ``fn`` on a fresh thread, as a consumer runs on its own, with its own connections."""
    results: list[Any] = []

    def run() -> None:
        try:
            results.append(fn())
        except BaseException as exc:
            results.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    assert results, "the thread did not finish"
    if isinstance(results[0], BaseException):
        raise results[0]
    return results[0]


def consumer_listener() -> NotifyListener:
    """A listener on a worker consumer's thread, LISTENing, past its first (blind) wake."""
    worker_connections.keep_open(listen=True)
    listener = NotifyListener(alias="default")
    listener.listen([QUEUE])
    listener.wait(0)
    return listener


def run_a_query() -> None:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT 1")


def wait_until_ready(listener: NotifyListener, timeout_s: float) -> tuple[Wake, float]:
    """Wait past the blind wakes of a fresh LISTEN that heard nothing; return a wake, its time."""
    started = time.monotonic()
    wake = listener.wait(timeout_s)
    while wake.blind and not wake.ready and time.monotonic() - started < timeout_s:
        wake = listener.wait(timeout_s)
    return wake, time.monotonic() - started


def test_a_worker_consumer_listens_on_its_own_connection_and_hears_what_a_query_read_first(
    in_worker: None, notify: Callable[[str], None]
) -> None:
    def consume() -> tuple[bool, Wake, float]:
        listener = consumer_listener()
        own = listener.shares_connection
        notify(QUEUE)
        time.sleep(0.2)  # the notification is in the socket now...
        run_a_query()  # ...and this query's reply read it: the next wait must still hear it
        wake, took = wait_until_ready(listener, 5.0)
        listener.close()
        return own, wake, took

    own, wake, took = on_own_thread(consume)
    assert own, "the worker consumer's listener opened a connection of its own"
    assert wake.ready == {QUEUE}
    assert took < 1.0


def test_the_listener_listens_again_when_django_reopens_the_connection(
    in_worker: None, notify: Callable[[str], None]
) -> None:
    def consume() -> tuple[bool, Wake, Wake, float]:
        listener = consumer_listener()
        connections["default"].close()  # e.g. found unusable after an error
        after_close = listener.wait(5.0)  # must not wait on a closed connection
        listener.listen([QUEUE])
        notify(QUEUE)
        wake, took = wait_until_ready(listener, 5.0)
        shared = listener.shares_connection
        listener.close()
        return shared, after_close, wake, took

    shared, after_close, wake, took = on_own_thread(consume)
    assert after_close.blind, "a wait on the closed connection must poll, since it heard nothing"
    assert shared
    assert wake.ready == {QUEUE}
    assert took < 1.0


def test_outside_a_worker_consumer_the_listener_opens_its_own_connection(
    notify: Callable[[str], None],
) -> None:
    def consume() -> tuple[bool, Wake]:
        listener = NotifyListener(alias="default")
        listener.listen([QUEUE])
        shared = listener.shares_connection
        notify(QUEUE)
        wake, _ = wait_until_ready(listener, 5.0)
        listener.close()
        return shared, wake

    shared, wake = on_own_thread(consume)
    assert not shared
    assert wake.ready == {QUEUE}


def test_closing_the_listener_unlistens_the_shared_connection(
    in_worker: None, notify: Callable[[str], None]
) -> None:
    def consume() -> int:
        listener = consumer_listener()
        listener.close()
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_listening_channels()")
            return int(cursor.fetchone()[0])

    assert on_own_thread(consume) == 0
