from __future__ import annotations

import logging

import pytest

from djworker.concurrency.solo import SoloPool
from djworker.concurrency.threads import ThreadPool
from djworker.execution import TaskExecutor
from djworker.log_safety import escape_control, get_logger
from djworker.task_definition import registry, task
from djworker.worker import describe_limits, unenforced_task_limits


def test_control_characters_are_escaped_and_other_text_is_kept() -> None:
    assert escape_control("a\nb\r\tc\x1b[31mé\u2028") == "a\\nb\\r\\tc\\x1b[31mé\\x2028"


def test_a_djworker_logger_escapes_string_and_exception_arguments(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = get_logger("djworker.test_log_safety")
    with caplog.at_level(logging.INFO, logger="djworker.test_log_safety"):
        logger.info("task=%s error=%s n=%d", "t\nFORGED", ValueError("x\ny"), 3)
    assert caplog.records[-1].getMessage() == "task=t\\nFORGED error=x\\ny n=3"


def test_the_banner_says_which_limits_a_pool_enforces() -> None:
    assert describe_limits(ThreadPool(size=1, on_outcome=print, executor=TaskExecutor())) == (
        "this pool enforces soft time limit; not hard time limit, max tasks/memory per child"
    )


def test_tasks_with_a_time_limit_the_pool_cannot_enforce_are_named() -> None:
    @task(name="tests.limited", time_limit=5)
    def limited() -> None: ...

    try:
        warnings = unenforced_task_limits(
            SoloPool(size=1, on_outcome=print, executor=TaskExecutor())
        )
    finally:
        del registry["tests.limited"]
    # Other test apps register tasks with limits too: this one must be among those named.
    [warning] = warnings
    assert warning.startswith("the solo pool does not enforce time_limit, set by ")
    assert "tests.limited" in warning
    assert warning.endswith(": those tasks run without it")


def test_every_djworker_module_logs_through_the_escaping_logger() -> None:
    from pathlib import Path

    import djworker

    root = Path(djworker.__file__).parent
    plain = sorted(
        str(path.relative_to(root))
        for path in root.rglob("*.py")
        if "logging.getLogger(__name__)" in path.read_text()
    )
    assert plain == [], f"use djworker.log_safety.get_logger(__name__) in {plain}"


def test_a_logged_traceback_keeps_its_lines_but_escapes_the_messages(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = get_logger("djworker.test_log_safety")
    try:
        try:
            raise KeyError("inner\nFORGED inner")
        except KeyError as inner:
            raise ValueError("outer\nFORGED outer\x1b[2J") from inner
    except ValueError as exc:
        with caplog.at_level(logging.ERROR, logger="djworker.test_log_safety"):
            logger.error("failed", exc_info=exc)
    text = caplog.text
    assert "Traceback (most recent call last):" in text
    assert not any(line.startswith("FORGED") for line in text.splitlines()), text
    assert "ValueError: outer\\nFORGED outer\\x1b[2J" in text
    assert "inner\\nFORGED inner" in text
