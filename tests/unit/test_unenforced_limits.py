"""A call's time limit that the pool cannot enforce is said once per task and kind of limit."""

from __future__ import annotations

import logging

import pytest

from djworker import message
from djworker.concurrency.capabilities import PoolCapabilities
from djworker.concurrency.prefork import PreforkPool
from djworker.unenforced_limits import UnenforcedLimits


class NoLimitsPool(PoolCapabilities):
    alias = "nolimits"


def call(task: str, **limits: float) -> message.Envelope:
    return message.build(
        task_id=f"id-{task}", task_name=task, args=[], kwargs={}, queue="q", priority=0, **limits
    )


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_each_task_and_kind_of_limit_is_warned_about_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    watch = UnenforcedLimits()
    with caplog.at_level(logging.WARNING):
        watch.check(NoLimitsPool, call("a", soft_time_limit=2))
        watch.check(NoLimitsPool, call("a", soft_time_limit=3, time_limit=4))
        watch.check(NoLimitsPool, call("b", soft_time_limit=2))
        watch.check(NoLimitsPool, call("a", soft_time_limit=3, time_limit=4))
    assert warnings(caplog) == [
        "task=a id=id-a soft_time_limit=2s of this call is not enforced: the nolimits pool cannot "
        "interrupt the task at its soft time limit, so the task runs without it (the solo, "
        "threads, prefork, gevent or eventlet pool can); said once per task",
        "task=a id=id-a time_limit=4s of this call is not enforced: the nolimits pool cannot "
        "stop the task at its hard time limit, so the task runs without it (the prefork, gevent "
        "or eventlet pool can); said once per task",
        "task=b id=id-b soft_time_limit=2s of this call is not enforced: the nolimits pool cannot "
        "interrupt the task at its soft time limit, so the task runs without it (the solo, "
        "threads, prefork, gevent or eventlet pool can); said once per task",
    ]


def test_a_pool_that_enforces_both_limits_or_a_call_without_limits_says_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    watch = UnenforcedLimits()
    with caplog.at_level(logging.WARNING):
        watch.check(PreforkPool, call("a", soft_time_limit=2, time_limit=4))
        watch.check(NoLimitsPool, call("a"))
    assert warnings(caplog) == []
