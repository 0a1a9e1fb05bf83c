"""A busy database: retrying a worker's write that found SQLite's write lock taken.

SQLite has one write lock per database file. A write that cannot get it within the busy
``timeout`` fails with ``database is locked`` (SQLITE_BUSY). A transaction in SQLite's default
*deferred* mode that reads and then writes fails that way at once, whatever the timeout: it
holds a read snapshot that another writer has made stale, and waiting cannot help. For a worker
such an error is never a reason to die or to drop a message: the write is idempotent and comes
out right if simply done again, from the start, in a fresh transaction.

Every write the worker makes (its heartbeat row, the ``django://`` channel's claims, acks,
give-backs and lease renewals, task results, control commands) goes through
``retry_when_busy``. It retries only SQLite's busy and locked errors, with a growing, jittered
pause, for at most ``RETRY_FOR_S`` seconds, and logs the retries. Any other error, and so every
error of another database (none is a ``sqlite3`` error), propagates on the first attempt:
PostgreSQL behaves as if this module did not exist. Nor does it retry inside a transaction the
caller opened: the caller's whole transaction, not this one write, would have to start again.

With ``OPTIONS["transaction_mode"] = "IMMEDIATE"`` a write waits for the lock up to the busy
``timeout`` before it fails, so a retry is rare; in deferred mode, under a steady stream of
other writers, many writes need one (the system check ``djworker.W002`` says so).
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Callable
from typing import TypeVar

from django.db import OperationalError, connections

from djworker.log_safety import get_logger

logger = get_logger(__name__)

T = TypeVar("T")

#: a write is not tried again once this long has passed since its first attempt
RETRY_FOR_S = 60.0
#: the pause before the first retry; each further one doubles, up to MAX_PAUSE_S
FIRST_PAUSE_S = 0.05
MAX_PAUSE_S = 1.0

# SQLite's primary result codes (the low byte of an extended code).
SQLITE_BUSY = 5
SQLITE_LOCKED = 6


def is_busy(error: BaseException) -> bool:
    """True if ``error`` is SQLite's "database is locked" or "database table is locked"."""
    cause = error if isinstance(error, sqlite3.Error) else error.__cause__
    if not isinstance(cause, sqlite3.OperationalError):
        return False  # Django re-raises the driver's error as the cause of its own
    code = getattr(cause, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in (SQLITE_BUSY, SQLITE_LOCKED)
    return "locked" in str(cause)


def pause_s(retry: int) -> float:
    """The pause before ``retry`` (1-based): doubling, capped, with jitter.

    The jitter keeps processes that failed together from retrying in lockstep.
    """
    return min(MAX_PAUSE_S, FIRST_PAUSE_S * 2 ** (retry - 1)) * random.uniform(0.5, 1.0)


def retry_when_busy(
    write: Callable[[], T],
    *,
    alias: str,
    what: str,
    sleep: Callable[[float], object] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Call ``write`` (a whole write, with its own transaction); again while SQLite is busy.

    ``what`` names the write in the log (``"worker=NAME heartbeat"``, ``"claim queue=NAME"``).
    """
    if connections[alias].in_atomic_block:
        return write()
    started = clock()
    retry = 0
    while True:
        try:
            return write()
        except OperationalError as exc:
            waited_s = clock() - started
            if not is_busy(exc) or waited_s >= RETRY_FOR_S:
                raise
            retry += 1
            pause = pause_s(retry)
            if retry & (retry - 1) == 0:  # the 1st, 2nd, 4th, 8th... retry: enough to follow
                logger.warning(
                    "%s found the database busy (%s); retry=%d after waited_s=%.1f, "
                    "giving up after %.0fs",
                    what,
                    exc,
                    retry,
                    waited_s,
                    RETRY_FOR_S,
                )
            sleep(pause)
