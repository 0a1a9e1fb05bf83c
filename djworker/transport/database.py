"""How the ``django://`` transport talks to the Django database: errors and commit durability."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import InterfaceError, OperationalError, connections

from djworker.commit import relaxed_commit


@contextmanager
def database_errors(alias: str) -> Iterator[None]:
    """Leave the thread's connection usable again after the database went away.

    Django only recycles broken connections at request boundaries, which a worker never
    reaches; without this close every later query of the thread would fail on the dead socket.
    The error itself propagates: it is in ``Transport.connection_errors``, so kombu's retry
    policy treats a lost database like a lost broker.
    """
    try:
        yield
    except (OperationalError, InterfaceError):
        connection = connections[alias]
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()
        raise


@contextmanager
def redeliverable_transaction(alias: str) -> Iterator[None]:
    """A transaction whose loss in a database crash can only cause a redelivery.

    For the consumer's own writes: claiming, acknowledging, requeueing and renewing leases.
    On PostgreSQL their commit does not wait for the WAL flush (``synchronous_commit`` off for
    this transaction only), which removes an fsync from every one of them. If PostgreSQL
    crashes before the flush, the lost write rolls the row back to an earlier state: a lost
    claim or renewal leaves the message visible (or visible once its old lease runs out), a
    lost ack or requeue leaves it leased until the visibility timeout. Either way the message
    is delivered again, never lost, so at-least-once delivery holds.

    Never use this for the publisher's insert (``Channel._put``): a lost insert is a lost
    message. Nor inside a transaction the caller opened (a task publishing or settling under
    ``transaction.atomic``): ``SET LOCAL`` would relax the caller's whole transaction, so this
    then runs as a plain savepoint with the caller's durability.
    """
    with relaxed_commit(alias):
        yield
