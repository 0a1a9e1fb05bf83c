"""``RunningCalls``: which calls this worker runs, and the redeliveries waiting behind them.

A message can reach the worker again while its first delivery still runs here: its visibility
timeout ran out, or its connection was replaced and the broker handed it back. Two runs of the
same call at once would race on the same result row and side effects, so the second delivery
is *parked* until the first reports; the consumer then acknowledges it or runs it. A call is
its task id and attempt: a retry is a new attempt, a redelivery is not.
"""

from __future__ import annotations

Call = tuple[str, int]


class RunningCalls:
    """Calls handed to the pool and not settled, by call; parked redeliveries, by token."""

    def __init__(self) -> None:
        self._running: dict[Call, int] = {}  # call -> token of the delivery that runs it
        self._parked: dict[int, list[int]] = {}  # that token -> tokens of redeliveries

    def claim(self, call: Call, token: int) -> int | None:
        """Record that ``token`` runs ``call``; if another token runs it already, park this one
        behind it and return the running token."""
        running = self._running.get(call)
        if running is not None and running != token:
            self._parked.setdefault(running, []).append(token)
            return running
        self._running[call] = token
        return None

    def finish(self, call: Call, token: int) -> list[int]:
        """``token``'s run is settled: forget it; return the redeliveries parked behind it."""
        if self._running.get(call) == token:
            del self._running[call]
        return self._parked.pop(token, [])

    def park(self, behind: int, tokens: list[int]) -> None:
        if tokens:
            self._parked[behind] = tokens

    def parked(self) -> set[int]:
        return {token for tokens in self._parked.values() for token in tokens}

    def unpark_all(self) -> list[int]:
        """Take every parked redelivery (its connection is gone)."""
        tokens = [token for tokens in self._parked.values() for token in tokens]
        self._parked.clear()
        return tokens
