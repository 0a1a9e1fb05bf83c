from __future__ import annotations

from concurrent.futures import Future

import pytest

from djworker.autoscale import Autoscaler, Load, decide

# (size, busy, waiting, low, high, recent_peak) -> target (None = leave it)
KEEPALIVE = 30.0
TABLE = [
    pytest.param(1, 1, 12, 1, 3, 13, 3, id="grows-to-the-maximum-when-many-wait-and-all-busy"),
    pytest.param(1, 1, 1, 1, 3, 2, 2, id="grows-only-as-far-as-the-demand"),
    pytest.param(2, 1, 3, 1, 3, 4, None, id="does-not-grow-while-a-slot-is-idle"),
    pytest.param(3, 3, 9, 1, 3, 12, None, id="never-grows-past-the-maximum"),
    pytest.param(1, 0, 0, 2, 4, 0, 2, id="grows-to-a-raised-minimum-at-once"),
    pytest.param(3, 0, 0, 1, 3, 3, None, id="keeps-slots-needed-within-the-keepalive"),
    pytest.param(3, 0, 0, 1, 3, 0, 1, id="shrinks-to-the-minimum-when-nothing-was-needed"),
    pytest.param(3, 0, 0, 1, 3, 2, 2, id="shrinks-only-to-the-recent-peak"),
    pytest.param(3, 2, 0, 1, 3, 0, 2, id="never-shrinks-below-the-busy-slots"),
    pytest.param(3, 3, 0, 1, 3, 0, None, id="keeps-a-fully-busy-pool"),
    pytest.param(1, 0, 0, 1, 3, 0, None, id="never-shrinks-below-the-minimum"),
    pytest.param(5, 1, 0, 1, 3, 5, 3, id="shrinks-at-once-to-a-lowered-maximum"),
    pytest.param(5, 4, 0, 1, 3, 5, 4, id="shrinking-to-a-lowered-maximum-spares-busy-slots"),
    pytest.param(5, 5, 0, 1, 3, 5, None, id="waits-when-every-slot-above-the-maximum-is-busy"),
]


@pytest.mark.parametrize(("size", "busy", "waiting", "low", "high", "recent_peak", "target"), TABLE)
def test_decide(
    size: int, busy: int, waiting: int, low: int, high: int, recent_peak: int, target: int | None
) -> None:
    decision = decide(
        Load(size=size, busy=busy, waiting=waiting),
        low=low,
        high=high,
        recent_peak=recent_peak,
        keepalive_s=KEEPALIVE,
    )
    assert (decision.target if decision else None) == target


def test_a_decision_gives_its_reason_with_the_numbers_it_saw() -> None:
    decision = decide(
        Load(size=1, busy=1, waiting=12), low=1, high=3, recent_peak=13, keepalive_s=30
    )
    assert decision is not None
    assert decision.reason == "grew 1→3: 12 waiting, 1/1 busy"
    assert decision.delta == 2


class FakePool:
    def __init__(self) -> None:
        self.load = Load(size=1, busy=0, waiting=0)
        self.deltas: list[int] = []

    def resize(self, delta: int) -> Future[int]:
        self.deltas.append(delta)
        self.load = Load(size=self.load.size + delta, busy=self.load.busy, waiting=0)
        done: Future[int] = Future()
        done.set_result(self.load.size)
        return done


def test_the_autoscaler_grows_under_a_backlog_and_shrinks_a_keepalive_after_the_need_ends() -> None:
    now = [0.0]
    pool = FakePool()
    scaler = Autoscaler(read_load=lambda: pool.load, resize=pool.resize, clock=lambda: now[0])
    scaler.configure((1, 3), keepalive_s=2.0)

    pool.load = Load(size=1, busy=1, waiting=5)
    scaler.tick()
    assert pool.deltas == [2]

    pool.load = Load(size=3, busy=0, waiting=0)  # the backlog is gone
    now[0] = 1.9
    scaler.tick()
    assert pool.deltas == [2]
    now[0] = 3.8  # the backlog was last seen at 0, and lasted until the tick at 1.9
    scaler.tick()
    assert pool.deltas == [2]
    now[0] = 4.0
    scaler.tick()
    assert pool.deltas == [2, -2]
    assert [d["reason"].split(":")[0] for d in scaler.recent] == ["grew 1→3", "shrank 3→1"]


def test_the_autoscaler_does_nothing_without_bounds() -> None:
    pool = FakePool()
    pool.load = Load(size=1, busy=1, waiting=5)
    scaler = Autoscaler(read_load=lambda: pool.load, resize=pool.resize)
    scaler.configure(None, keepalive_s=2.0)
    assert scaler.tick() is None
    assert pool.deltas == []
