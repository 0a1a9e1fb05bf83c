"""``RedisLeases``: keep the messages a Redis channel holds from coming back while they run.

kombu's Redis transport records a delivered, unacknowledged message in the ``unacked_index``
sorted set, scored by its delivery time, and any consumer's ``restore_visible`` puts it back in
its queue once the score is older than ``visibility_timeout``, whether or not its consumer is
still alive. A task longer than the timeout was thus delivered again, to this very worker or
another, every timeout while it ran. This keeper does for Redis what ``leases.LeaseKeeper``
does for ``django://``: every ``visibility_timeout / 3`` seconds a daemon thread moves the
score of every message the channel still holds to now. ``ZADD XX`` only updates members that
are there, so a message acked (or restored by another consumer) in between is never written
back. A worker that dies stops renewing, and its messages come back after the timeout as before.

The thread has a redis-py client of its own on the channel's connection pool (which is
thread-safe), so it never touches the consumer's connection.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from time import time
from typing import Any

from djworker.log_safety import get_logger

logger = get_logger(__name__)

#: tags renewed by one ZADD
RENEW_BATCH = 500


class RedisLeases:
    """The delivery tags one channel holds, and the thread that renews their scores."""

    def __init__(
        self,
        *,
        visibility_timeout_s: float,
        index_key: str,
        client: Callable[[], Any],
        errors: tuple[type[BaseException], ...],
    ) -> None:
        self.visibility_timeout_s = visibility_timeout_s
        self.index_key = index_key
        self._client = client
        self._errors = errors
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def interval_s(self) -> float:
        return self.visibility_timeout_s / 3

    def hold(self, tag: str) -> None:
        with self._lock:
            self._held.add(tag)
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(
                    target=self._run, name="djworker-redis-leases", daemon=True
                )
                self._thread.start()

    def release(self, tag: str) -> None:
        with self._lock:
            self._held.discard(tag)

    def held(self) -> list[str]:
        with self._lock:
            return list(self._held)

    def renew(self) -> int:
        """One round: score every held tag still in the index at now; return how many."""
        tags = self.held()
        if not tags:
            return 0
        client = self._client()
        now = time()
        renewed = 0
        pipe = client.pipeline(transaction=False)
        for start in range(0, len(tags), RENEW_BATCH):
            batch = tags[start : start + RENEW_BATCH]
            pipe.zadd(self.index_key, dict.fromkeys(batch, now), xx=True, ch=True)
        for changed in pipe.execute():
            renewed += int(changed)
        return renewed

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.renew()
            except self._errors:
                # The next round retries; two thirds of the timeout are left until then.
                logger.warning(
                    "could not renew the visibility of held=%d redis message(s); retrying in "
                    "interval_s=%.0f",
                    len(self.held()),
                    self.interval_s,
                    exc_info=True,
                )
