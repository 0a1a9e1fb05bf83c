"""``HeldMessages``: received messages whose countdown or ETA has not come yet.

The consumer keeps such a message (it counts in the prefetch window, so the broker sends one
more in its place) and hands it to the pool when it is due. Soonest first, by token: the
consumer's number for one delivery.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from datetime import datetime


class HeldMessages:
    """Tokens of held deliveries, ordered by when each is due."""

    def __init__(self) -> None:
        self._heap: list[tuple[datetime, int]] = []

    def __len__(self) -> int:
        return len(self._heap)

    def tokens(self) -> set[int]:
        return {token for _, token in self._heap}

    def hold(self, eta: datetime, token: int) -> None:
        heapq.heappush(self._heap, (eta, token))

    def next_due(self) -> datetime | None:
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: datetime) -> Iterator[int]:
        """Take the tokens due at ``now``, soonest first."""
        while self._heap and self._heap[0][0] <= now:
            yield heapq.heappop(self._heap)[1]

    def take_all(self) -> list[int]:
        """Take every token, soonest first (the consumer stops, or lost their connection)."""
        tokens = [token for _, token in sorted(self._heap)]
        self._heap.clear()
        return tokens

    def discard(self, tokens: set[int]) -> None:
        if any(token in tokens for _, token in self._heap):
            self._heap = [entry for entry in self._heap if entry[1] not in tokens]
            heapq.heapify(self._heap)
