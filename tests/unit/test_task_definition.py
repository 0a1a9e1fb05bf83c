from __future__ import annotations

import datetime as dt
import re

import pytest

from djworker import execution
from djworker.exceptions import ConfigurationError
from djworker.task_definition import Task, registry, task


def test_the_bare_decorator_registers_the_function_under_its_dotted_name() -> None:
    @task
    def double(x: int) -> int:
        return 2 * x

    assert registry[double.name] is double
    assert double.name.endswith(
        "test_task_definition.test_the_bare_decorator_registers_the_function_under_its_dotted_name.<locals>.double"
    )
    assert double(4) == 8  # calling it runs it inline


def test_the_decorator_takes_options() -> None:
    @task(name="custom.name", queue="mail", priority=7, max_retries=5, acks_late=False)
    def send() -> None: ...

    assert (send.name, send.queue, send.priority, send.max_retries, send.acks_late) == (
        "custom.name",
        "mail",
        7,
        5,
        False,
    )


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        ({"priority": 12}, "priority expects an integer from 0 to 9"),
        ({"max_retries": -1}, "max_retries expects an integer >= 0 or None"),
        ({"autoretry_for": ValueError}, "autoretry_for expects a tuple of exception classes"),
        ({"time_limit": 0}, "time_limit expects a positive number of seconds"),
        (
            {"time_limit": 5, "soft_time_limit": 5},
            r"soft_time_limit \(5.0\) must be below time_limit \(5.0\)",
        ),
        ({"queue": "bad queue"}, "queue names"),
        ({"redact_args": "yes"}, "redact_args expects True or False; got 'yes'"),
        ({"max_deliveries": -1}, r"max_deliveries expects a whole number >= 0 \(0 means no cap\)"),
        ({"max_deliveries": "3"}, "max_deliveries expects a whole number"),
    ],
)
def test_bad_task_options_are_refused_at_decoration(
    options: dict[str, object], complaint: str
) -> None:
    with pytest.raises(ConfigurationError, match=complaint):
        task(**options)(lambda: None)


def test_a_task_with_redact_args_stores_each_value_as_redacted_and_keeps_the_shape() -> None:
    secret = Task(lambda *a, **k: None, name="t.secret", redact_args=True)
    plain = Task(lambda *a, **k: None, name="t.plain")
    assert secret.stored_arguments(["4111", 2], {"cvv": "737"}) == (
        ["[redacted]", "[redacted]"],
        {"cvv": "[redacted]"},
    )
    assert plain.stored_arguments(["4111"], {"cvv": "737"}) == (["4111"], {"cvv": "737"})


def test_two_functions_cannot_share_a_task_name() -> None:
    task(name="shared.name")(lambda: 1)

    def other() -> int:
        return 2

    with pytest.raises(ConfigurationError, match="already used by"):
        task(name="shared.name")(other)


def make(**options: object) -> Task[[], None]:
    return Task(lambda: None, name="t", **options)  # type: ignore[arg-type]


def test_without_backoff_a_retry_waits_the_default_delay() -> None:
    assert execution.retry_countdown(make(default_retry_delay=7), attempt=3) == 7


def test_backoff_doubles_per_attempt_up_to_its_maximum() -> None:
    t = make(retry_backoff=2, retry_jitter=False, retry_backoff_max=30)
    assert [execution.retry_countdown(t, attempt=a) for a in range(6)] == [2, 4, 8, 16, 30, 30]


def test_jitter_keeps_the_countdown_between_zero_and_the_backoff() -> None:
    t = make(retry_backoff=True, retry_jitter=True)
    values = [execution.retry_countdown(t, attempt=4) for _ in range(200)]
    assert all(0 <= v <= 16 for v in values)
    assert len(set(values)) > 100


def _add(a: int, b: int) -> int:
    return a + b


add = Task(_add, name="unit.add")  # not registered: these calls never reach a broker


def test_a_call_with_a_value_the_database_cannot_store_raises_type_error_before_any_write() -> None:
    # Raised before the result row or the broker is touched: no database, no broker here.
    with pytest.raises(TypeError, match=r"args\[0\] contains a NUL character"):
        add.delay("a\x00b", 1)
    with pytest.raises(TypeError, match="lone surrogate"):
        add.delay_on_commit("\udc80", 1)


@pytest.mark.parametrize(
    "options",
    [
        {"eta": dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=14)))},
        {"eta": dt.datetime(9999, 12, 31, 23, tzinfo=dt.timezone(dt.timedelta(hours=-14)))},
        {"expires": dt.datetime(1, 1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=14)))},
        {"countdown": 1e15},
        {"expires": 1e15},
    ],
)
def test_a_time_outside_the_carried_range_is_refused_at_the_call(
    options: dict[str, object],
) -> None:
    with pytest.raises(ValueError, match="9999-12-30"):
        add.apply_async((1, 2), **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "named"),
    [("a\x00b", "result contains a NUL character"), ({"x": float("inf")}, "result['x'] is inf")],
)
def test_a_result_the_database_cannot_store_fails_the_run_with_a_type_error_naming_it(
    value: object, named: str
) -> None:
    with pytest.raises(TypeError, match=re.escape(named)):
        execution._ensure_json_result(value, make())
