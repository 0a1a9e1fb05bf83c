"""Commits whose loss in a database crash is harmless, and so need not wait for the disk."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connections, transaction


@contextmanager
def relaxed_commit(alias: str = "default") -> Iterator[None]:
    """A transaction whose commit does not wait for the WAL flush on PostgreSQL.

    Only for writes that a later write or a redelivery repairs if a PostgreSQL crash loses
    them: the worker's own broker bookkeeping (claims, acks, lease renewals) and a task's
    RUNNING mark (its final write follows). ``synchronous_commit`` is off for this transaction
    only. Inside a transaction the caller opened (``atomic``, or autocommit turned off),
    ``SET LOCAL`` would relax the caller's whole transaction, so there this is a plain savepoint
    with the caller's durability.
    """
    connection = connections[alias]
    outermost = not connection.in_atomic_block and connection.get_autocommit()
    with transaction.atomic(using=alias):
        if outermost and connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
        yield
