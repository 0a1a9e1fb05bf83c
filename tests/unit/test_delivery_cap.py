"""Which delivery cap a message gets, and when a count is over it."""

from __future__ import annotations

from djworker import conf, delivery_cap
from djworker.job import Job
from djworker.task_definition import Task


def test_a_task_option_wins_over_the_worker_setting_and_the_reason_names_the_source() -> None:
    config = conf.load_config(djworker_settings={"MAX_DELIVERIES": 8}, environ={})
    own = Task(lambda: None, name="t.own", max_deliveries=2)
    inherited = Task(lambda: None, name="t.inherited")
    assert delivery_cap.cap_for(own, config) == (2, "task 't.own' max_deliveries")
    assert delivery_cap.cap_for(inherited, config) == (
        8,
        "worker max_deliveries, from settings",
    )


def test_a_cap_of_n_lets_n_runs_start_and_is_spent_by_the_nth() -> None:
    job = Job(token=1, envelope={"id": "x"}, max_deliveries=3)
    assert [delivery_cap.over(job, n) for n in (1, 3, 4)] == [False, False, True]
    assert [delivery_cap.spent(job, n) for n in (2, 3)] == [False, True]


def test_a_cap_of_zero_never_stops_a_message() -> None:
    job = Job(token=1, envelope={"id": "x"}, max_deliveries=0)
    assert not delivery_cap.over(job, 10_000) and not delivery_cap.spent(job, 10_000)
