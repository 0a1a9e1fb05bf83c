"""Autoscale: a pure ``decide()`` and the ``Autoscaler`` that acts on its decisions.

The signal is demand = slots running a task + tasks waiting (received, not yet started, not held
for an ETA). The pool grows at once, up to the maximum, when tasks wait and every slot is busy.
It shrinks to the highest demand seen in the last ``keepalive_s`` seconds (never below the
minimum), so a slot is only removed once it has not been needed for a keepalive. Shrinking only
removes idle slots (the pools guarantee that), and never below the slots busy now.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from djworker.log_safety import get_logger

logger = get_logger(__name__)

#: how many decisions a worker remembers for the admin
RECENT_DECISIONS = 20


@dataclass(frozen=True)
class Load:
    """What the pool is doing now."""

    size: int
    busy: int
    waiting: int


@dataclass(frozen=True)
class Decision:
    """Resize the pool from ``size`` to ``target``, for ``reason``."""

    size: int
    target: int
    reason: str

    @property
    def delta(self) -> int:
        return self.target - self.size


def decide(
    load: Load, *, low: int, high: int, recent_peak: int, keepalive_s: float
) -> Decision | None:
    """The resize the pool needs now, or ``None``.

    ``recent_peak`` is the highest demand seen in the last ``keepalive_s`` seconds. Pure: no
    clock, no I/O, so it is table-tested.
    """
    size, busy, waiting = load.size, load.busy, load.waiting
    demand = busy + waiting
    counts = f"{waiting} waiting, {busy}/{size} busy"
    if size < low:
        return Decision(size, low, f"grew {size}→{low}: below the minimum {low}; {counts}")
    if size > high:
        target = max(high, busy)
        if target < size:
            reason = f"shrank {size}→{target}: above the maximum {high}; {counts}"
            return Decision(size, target, reason)
        return None
    if waiting > 0 and busy >= size and size < high:
        target = min(high, demand)
        return Decision(size, target, f"grew {size}→{target}: {counts}")
    peak = max(recent_peak, demand)
    if peak < size and size > low:
        target = max(low, peak)
        reason = (
            f"shrank {size}→{target}: at most {peak} needed in the last {keepalive_s:g}s; {counts}"
        )
        return Decision(size, target, reason)
    return None


class Autoscaler:
    """Applies ``decide()`` to a pool on each control tick and remembers recent decisions.

    ``read_load`` and ``resize`` are given by the worker: ``resize(delta)`` runs on the thread
    that owns the pool and returns the new size.
    """

    def __init__(
        self,
        *,
        read_load: Callable[[], Load],
        resize: Callable[[int], Any],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.read_load = read_load
        self.resize = resize
        self.clock = clock
        self.bounds: tuple[int, int] | None = None
        self.keepalive_s = 30.0
        # (when, demand) over the last keepalive; seeded with the pool's size, so a new pool
        # or new bounds keep the size for one keepalive before shrinking.
        self._samples: deque[tuple[float, int]] = deque()
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT_DECISIONS)
        self.pending: Any = None

    def configure(self, bounds: tuple[int, int] | None, keepalive_s: float) -> None:
        self.bounds = bounds
        self.keepalive_s = keepalive_s
        self._samples.clear()

    def _recent_peak(self, now: float, load: Load) -> int:
        if not self._samples:
            self._samples.append((now, load.size))
        self._samples.append((now, load.busy + load.waiting))
        # A sample's demand lasted until the next sample was taken: drop it only once that
        # next sample is older than the keepalive, so a slot is kept at least a keepalive.
        while len(self._samples) > 1 and self._samples[1][0] < now - self.keepalive_s:
            self._samples.popleft()
        return max(demand for _, demand in self._samples)

    def tick(self) -> Decision | None:
        if self.bounds is None:
            return None
        if self.pending is not None and not getattr(self.pending, "done", lambda: True)():
            return None  # the previous resize has not run yet: decide on fresh numbers
        self.pending = None
        load = self.read_load()
        now = self.clock()
        low, high = self.bounds
        decision = decide(
            load,
            low=low,
            high=high,
            recent_peak=self._recent_peak(now, load),
            keepalive_s=self.keepalive_s,
        )
        if decision is None:
            return None
        logger.info("autoscale %s", decision.reason)
        self.recent.append(
            {
                "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "from": decision.size,
                "to": decision.target,
                "reason": decision.reason,
            }
        )
        self.pending = self.resize(decision.delta)
        return decision
