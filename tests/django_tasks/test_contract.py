"""django.tasks' contract, held by WorkerBackend in-process: validation, enqueueing, retrieval,
signals, JSON, transactions and checks.

The ground is that of Django's own tests/tasks/ (test_tasks.py, test_immediate_backend.py,
test_custom_backend.py), for a backend whose results live in djworker's table. Runs happen in
this process through djworker's executor (``execute()``, as a pool slot runs it); the same
behaviours in real ``runworker`` processes are in test_worker.py.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import pickle
from datetime import datetime, timedelta
from typing import Any

import django
import pytest
from asgiref.sync import async_to_sync
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from djworker.backend import WorkerBackend
from djworker.backend_runner import FrameworkTask
from djworker.backend_task import WorkerTask, broker_priority
from djworker.models.broker import QueueMessage
from djworker.models.results import TaskResult as ResultRow
from djworker.task_definition import registry
from djworker.tasks_framework import (
    FRAMEWORK,
    InvalidTask,
    InvalidTaskBackend,
    TaskResultDoesNotExist,
    TaskResultMismatch,
    TaskResultStatus,
    default_task_backend,
    task,
    task_backends,
)
from tests.django_tasks.conftest import SignalRecorder, run_in_process
from tests.taskapp import framework_tasks as tasks

pytestmark = pytest.mark.django_db(transaction=True)

BACKEND = "djworker.backend.WorkerBackend"


def not_module_level() -> None:
    def nested() -> None: ...

    task()(nested)


# -- the backend and its tasks -------------------------------------------------------------


def test_the_backend_is_the_configured_default_and_declares_every_feature() -> None:
    backend = task_backends["default"]
    assert isinstance(backend, WorkerBackend)
    assert f"{type(backend).__module__}.{type(backend).__qualname__}" == BACKEND
    assert (
        backend.supports_defer,
        backend.supports_async_task,
        backend.supports_get_result,
        backend.supports_priority,
    ) == (True, True, True, True)


def test_the_decorator_makes_worker_tasks_registered_under_their_module_path() -> None:
    assert isinstance(tasks.noop, WorkerTask)
    assert tasks.noop.module_path == "tests.taskapp.framework_tasks.noop"
    entry = registry[tasks.noop.module_path]
    assert isinstance(entry, FrameworkTask)
    assert entry.task is tasks.noop
    assert isinstance(registry[tasks.noop_async.module_path], FrameworkTask)


@tasks.needs_task_extras
def test_a_task_keeps_djworker_options_given_to_the_decorator() -> None:
    assert (tasks.fail_until.max_retries, tasks.fail_until.default_retry_delay) == (2, 0.1)
    entry = registry[tasks.fail_until.module_path]
    assert (entry.max_retries, entry.autoretry_for) == (2, (Exception,))
    assert registry[tasks.sleep_past_limit.module_path].time_limit == 1.0
    assert registry[tasks.noop.module_path].autoretry_for == ()  # never retried unless asked
    assert (tasks.redacted_echo.redact_args, tasks.capped_block_until_killed.max_deliveries) == (
        True,
        1,
    )
    assert registry[tasks.redacted_echo.module_path].redact_args is True
    assert registry[tasks.capped_block_until_killed.module_path].max_deliveries == 1
    assert registry[tasks.noop.module_path].max_deliveries is None  # the worker's cap


@tasks.needs_task_extras
def test_redact_args_keeps_argument_values_out_of_the_result_row() -> None:
    result = tasks.redacted_echo.enqueue("password", token="secret")
    assert (result.args, result.kwargs) == (["password"], {"token": "secret"})
    row = ResultRow.objects.get(id=result.id)
    assert (row.args, row.kwargs) == (["[redacted]"], {"token": "[redacted]"})
    assert default_task_backend.get_result(result.id).args == ["[redacted]"]


@tasks.needs_task_extras
def test_bad_djworker_options_are_an_invalid_task_naming_the_value() -> None:
    def bad_retries() -> None: ...

    bad_retries.__qualname__ = bad_retries.__name__ = "bad_retries_fixture"
    globals()["bad_retries_fixture"] = bad_retries
    with pytest.raises(InvalidTask, match="max_retries expects an integer >= 0 or None; got -1"):
        task(max_retries=-1)(bad_retries)
    with pytest.raises(InvalidTask, match="redact_args expects True or False; got 'yes'"):
        task(redact_args="yes")(bad_retries)
    with pytest.raises(InvalidTask, match=r"max_deliveries expects a whole number >= 0"):
        task(max_deliveries=-2)(bad_retries)
    with pytest.raises(TypeError, match="unexpected keyword argument 'not_an_option'"):
        task(not_an_option=1)(bad_retries)


# -- validation: Django's classes and messages ----------------------------------------------


def test_a_function_not_at_module_level_is_refused_with_djangos_message() -> None:
    for bad in (any, lambda: None):
        with pytest.raises(
            InvalidTask, match=r"^Task function must be defined at a module level\.$"
        ):
            task()(bad)
    with pytest.raises(InvalidTask, match="module level"):
        not_module_level()


def test_a_context_task_without_a_context_parameter_is_refused() -> None:
    with pytest.raises(
        InvalidTask,
        match=r"^Task takes context but does not have a first argument of 'context'\.$",
    ):
        task(takes_context=True)(tasks.calculate_meaning_of_life.func)


@pytest.mark.parametrize("priority", [-101, 101, 3.1])
def test_a_priority_outside_django_range_is_refused(priority: float) -> None:
    with pytest.raises(
        InvalidTask, match=r"^priority must be a whole number between -100 and 100\.$"
    ):
        tasks.noop.using(priority=priority)


def test_the_whole_priority_range_is_accepted() -> None:
    for priority in (-100, 0, 100):
        assert tasks.noop.using(priority=priority).priority == priority


def test_a_naive_run_after_is_refused() -> None:
    with pytest.raises(InvalidTask, match=r"^run_after must be an aware datetime\.$"):
        tasks.noop.using(run_after=datetime.now())


def test_a_queue_not_in_queues_is_refused_and_an_empty_list_allows_any() -> None:
    with override_settings(TASKS={"default": {"BACKEND": BACKEND, "QUEUES": ["default", "mail"]}}):
        assert tasks.noop.using(queue_name="mail").queue_name == "mail"
        with pytest.raises(InvalidTask, match=r"^Queue 'other' is not valid for backend\.$"):
            tasks.noop.using(queue_name="other")
    with (
        override_settings(TASKS={"default": {"BACKEND": BACKEND}}),
        pytest.raises(InvalidTask, match=r"^Queue 'mail' is not valid for backend\.$"),
    ):
        tasks.noop.using(queue_name="mail")
    assert tasks.noop.using(queue_name="anything").queue_name == "anything"


def test_a_queue_name_no_broker_accepts_is_refused_with_djworkers_rule() -> None:
    with pytest.raises(
        InvalidTask, match=r"^Queue 'no spaces' is not valid for djworker: queue names"
    ):
        tasks.noop.using(queue_name="no spaces")


def test_enqueue_validates_again_against_the_current_settings() -> None:
    mail = tasks.noop.using(queue_name="mail")
    with (
        override_settings(TASKS={"default": {"BACKEND": BACKEND}}),
        pytest.raises(InvalidTask, match=r"^Queue 'mail' is not valid for backend\.$"),
    ):
        mail.enqueue()


def test_unknown_and_unimportable_backends_are_invalid_task_backends() -> None:
    with pytest.raises(InvalidTaskBackend, match=r"^The connection 'unknown' doesn't exist\.$"):
        tasks.noop.using(backend="unknown")
    with (
        override_settings(
            TASKS={"default": {"BACKEND": BACKEND}, "missing": {"BACKEND": "does.not.exist"}}
        ),
        pytest.raises(InvalidTaskBackend, match=r"^Could not find backend 'does\.not\.exist'"),
    ):
        tasks.noop.using(backend="missing")


def test_unknown_options_are_refused_when_the_backend_is_made() -> None:
    with (
        override_settings(TASKS={"default": {"BACKEND": BACKEND, "OPTIONS": {"ON_COMMIT": 1}}}),
        pytest.raises(InvalidTaskBackend, match=r"unknown keys \['ON_COMMIT'\]"),
    ):
        task_backends["default"]
    with (
        override_settings(
            TASKS={"default": {"BACKEND": BACKEND, "OPTIONS": {"ENQUEUE_ON_COMMIT": "yes"}}}
        ),
        pytest.raises(InvalidTaskBackend, match="must be True or False; got 'yes'"),
    ):
        task_backends["default"]


def test_a_name_taken_by_a_djworker_task_is_refused() -> None:
    import djworker

    def clash() -> None: ...

    clash.__module__ = "tests.django_tasks.clash_fixture"
    clash.__qualname__ = "clash"
    native = djworker.task(clash)
    try:
        with pytest.raises(InvalidTask, match=r"already used by @djworker\.task"):
            task(clash)
    finally:
        registry.pop(native.name)


# -- enqueue and retrieval ------------------------------------------------------------------


def test_enqueue_returns_a_ready_result_and_stores_it(signal_recorder: SignalRecorder) -> None:
    result = tasks.echo.enqueue(1, (2, 3), key=b"value")

    assert result.status == TaskResultStatus.READY
    assert (result.args, result.kwargs) == ([1, [2, 3]], {"key": "value"})
    assert result.task == tasks.echo
    assert result.backend == "default"
    assert (result.errors, result.worker_ids, result.attempts) == ([], [], 0)
    assert result.enqueued_at is not None and result.started_at is None
    assert not result.is_finished
    with pytest.raises(ValueError, match="Task has not finished yet"):
        _ = result.return_value
    row = ResultRow.objects.get(id=result.id)
    assert (row.task_name, row.backend, row.task_priority, row.priority) == (
        tasks.echo.module_path,
        "default",
        0,
        broker_priority(0),
    )
    assert QueueMessage.objects.filter(queue="default").exists()
    assert signal_recorder.names(result.id) == ["task_enqueued"]
    assert signal_recorder.sent[0].sender is WorkerBackend
    assert signal_recorder.sent[0].status == "READY"


def test_aenqueue_and_aget_result_round_trip() -> None:
    async def scenario() -> None:
        result = await tasks.noop.aenqueue()
        assert result.status == TaskResultStatus.READY
        assert await tasks.noop.aget_result(result.id) == result
        assert await default_task_backend.aget_result(result.id) == result
        await result.arefresh()
        assert await default_task_backend.aget_result(result.id) == result

    async_to_sync(scenario)()


def test_get_result_returns_an_equal_result_from_any_entry_point() -> None:
    now = timezone.now()
    result = tasks.noop.using(priority=-30, run_after=now).enqueue()

    assert default_task_backend.get_result(result.id) == result
    assert tasks.noop.get_result(result.id) == result
    assert tasks.noop.get_result(result.id).task.priority == -30


def test_refresh_leaves_an_unchanged_result_equal() -> None:
    result = tasks.noop.enqueue()
    before = dataclasses.asdict(result)
    result.refresh()
    assert dataclasses.asdict(result) == before


@pytest.mark.parametrize(
    "result_id", ["123", "not-a-uuid", "", "x" * 65, 123, None, "nul\x00id", "\ud800"]
)
def test_an_unknown_or_malformed_id_is_task_result_does_not_exist(result_id: Any) -> None:
    with pytest.raises(TaskResultDoesNotExist):
        default_task_backend.get_result(result_id)


def test_an_unknown_id_is_task_result_does_not_exist_async() -> None:
    with pytest.raises(TaskResultDoesNotExist):
        async_to_sync(tasks.noop.aget_result)("123")


def test_a_djworker_task_result_is_not_a_django_tasks_result() -> None:
    from tests.taskapp.tasks import noop as native_noop

    native = native_noop.delay()
    with pytest.raises(TaskResultDoesNotExist):
        default_task_backend.get_result(native.id)


def test_a_result_of_another_task_is_a_mismatch() -> None:
    result = tasks.noop_async.enqueue()
    with pytest.raises(TaskResultMismatch, match="Task does not match"):
        tasks.noop.get_result(result.id)


def test_arguments_json_cannot_carry_are_refused_at_the_call() -> None:
    with pytest.raises(TypeError, match="Unsupported type"):
        tasks.echo.enqueue(datetime.now())
    with pytest.raises(TypeError, match="dict keys must be strings"):
        tasks.echo.enqueue({1: "a"})
    assert not ResultRow.objects.exists()


def test_aenqueue_refuses_arguments_json_cannot_carry() -> None:
    with pytest.raises(TypeError, match="Unsupported type"):
        async_to_sync(tasks.echo.aenqueue)(datetime.now())


@pytest.mark.skipif(
    FRAMEWORK != "django.tasks" or django.VERSION < (6, 1),
    reason="Task pickling arrived in Django 6.1",
)
def test_a_worker_task_pickles() -> None:
    assert pickle.loads(pickle.dumps(tasks.fail_until)) == tasks.fail_until


# -- priorities -------------------------------------------------------------------------------


def test_priorities_map_onto_the_broker_levels_in_order() -> None:
    levels = [broker_priority(p) for p in range(-100, 101)]
    assert levels == sorted(levels)
    assert (levels[0], levels[-1], broker_priority(0), broker_priority(1)) == (0, 9, 4, 5)
    assert set(levels) == set(range(10))
    assert broker_priority(2.0) == broker_priority(2)


# -- transactions ----------------------------------------------------------------------------


def test_enqueue_in_a_rolled_back_transaction_leaves_nothing(
    signal_recorder: SignalRecorder,
) -> None:
    class Rollback(Exception):
        pass

    with pytest.raises(Rollback), transaction.atomic():
        result = tasks.noop.enqueue()
        assert tasks.noop.get_result(result.id) == result  # readable inside the transaction
        raise Rollback

    assert not ResultRow.objects.filter(id=result.id).exists()
    assert not QueueMessage.objects.exists()
    assert signal_recorder.sent == []


def test_enqueue_in_a_transaction_publishes_when_it_commits(
    signal_recorder: SignalRecorder,
) -> None:
    with transaction.atomic():
        result = tasks.noop.enqueue()
        assert not QueueMessage.objects.exists()
        assert signal_recorder.sent == []
    assert QueueMessage.objects.count() == 1
    assert signal_recorder.names(result.id) == ["task_enqueued"]


def test_enqueue_on_commit_can_be_turned_off() -> None:
    with (
        override_settings(
            TASKS={
                "default": {
                    "BACKEND": BACKEND,
                    "QUEUES": [],
                    "OPTIONS": {"ENQUEUE_ON_COMMIT": False},
                }
            }
        ),
        transaction.atomic(),
    ):
        tasks.noop.enqueue()
        assert QueueMessage.objects.count() == 1


# -- runs through djworker's executor ----------------------------------------------------------


def test_a_run_sends_started_then_finished_once_with_the_backend_class(
    signal_recorder: SignalRecorder,
) -> None:
    result = tasks.calculate_meaning_of_life.enqueue()
    run_in_process(result.id)

    assert signal_recorder.names(result.id) == ["task_enqueued", "task_started", "task_finished"]
    enqueued, started, finished = signal_recorder.sent
    assert {enqueued.sender, started.sender, finished.sender} == {WorkerBackend}
    assert (started.status, started.worker_ids) == ("RUNNING", ["inprocess@test"])
    assert finished.status == "SUCCESSFUL"
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 42
    assert (result.attempts, result.worker_ids, result.errors) == (1, ["inprocess@test"], [])
    assert result.enqueued_at <= result.started_at <= result.finished_at
    assert result.last_attempted_at == result.started_at


def test_a_run_the_delivery_cap_refuses_is_failed_and_sends_task_finished_once(
    signal_recorder: SignalRecorder,
) -> None:
    result = tasks.capped_block_until_killed.enqueue("unused")
    # One delivery already started and never finished (its worker died).
    ResultRow.objects.filter(id=result.id).update(deliveries=1, status="RUNNING")
    outcome = run_in_process(
        result.id, redelivered=True, max_deliveries=1, max_deliveries_from="task max_deliveries"
    )
    assert outcome.reject

    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    [error] = result.errors
    assert error.exception_class_path == "djworker.exceptions.DeliveryLimitExceeded"
    assert "not run: delivery 2 is over max_deliveries=1" in error.traceback
    assert signal_recorder.names(result.id) == ["task_enqueued", "task_finished"]
    finished = signal_recorder.sent[-1]
    assert (finished.sender, finished.status) == (WorkerBackend, "FAILED")
    assert finished.errors == ["djworker.exceptions.DeliveryLimitExceeded"]


def test_a_revoked_call_is_failed_and_sends_task_finished_once(
    signal_recorder: SignalRecorder,
) -> None:
    from djworker import revocation

    result = tasks.calculate_meaning_of_life.enqueue()
    revocation.revoke(result.id, by="admin")
    revocation.revoke(result.id, by="admin")  # again: nothing changes, nothing sent

    assert signal_recorder.names(result.id) == ["task_enqueued", "task_finished"]
    finished = signal_recorder.sent[-1]
    assert (finished.sender, finished.status) == (WorkerBackend, "FAILED")
    assert finished.errors == ["djworker.exceptions.TaskRevoked"]
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    run_in_process(result.id)  # a worker receiving it refuses it, sending nothing more
    assert signal_recorder.names(result.id) == ["task_enqueued", "task_finished"]


def test_a_failing_run_records_the_class_path_and_traceback(
    signal_recorder: SignalRecorder,
) -> None:
    result = tasks.failing_value_error.enqueue("it broke")
    run_in_process(result.id)

    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    with pytest.raises(ValueError, match="Task failed"):
        _ = result.return_value
    [error] = result.errors
    assert error.exception_class_path == "builtins.ValueError"
    assert error.exception_class is ValueError
    assert error.traceback.startswith("Traceback (most recent call last):")
    assert error.traceback.endswith("ValueError: it broke\n")
    assert signal_recorder.sent[-1].signal == "task_finished"
    assert signal_recorder.sent[-1].errors == ["builtins.ValueError"]


@pytest.mark.parametrize(
    ("fixture", "path"),
    [
        (tasks.failing_system_exit, "builtins.SystemExit"),
        (tasks.failing_keyboard_interrupt, "builtins.KeyboardInterrupt"),
        (tasks.unserialisable_return_value, "builtins.TypeError"),
    ],
)
def test_exits_interrupts_and_bad_return_values_are_recorded_failed(
    fixture: Any, path: str
) -> None:
    result = fixture.enqueue()
    run_in_process(result.id)
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert [e.exception_class_path for e in result.errors] == [path]


def test_a_return_value_is_stored_as_json_gives_it_back() -> None:
    result = tasks.complex_return_value.enqueue()
    run_in_process(result.id)
    assert tasks.complex_return_value.get_result(result.id).return_value == {
        "tuple": [1, 2],
        "nested": [{"x": "bytes"}],
        "1": "int key",
    }


def test_async_tasks_run_and_return() -> None:
    result = tasks.add_async.enqueue(2, 3)
    run_in_process(result.id)
    result.refresh()
    assert result.return_value == 5


def test_a_context_task_sees_its_running_result() -> None:
    result = tasks.context_report.enqueue()
    run_in_process(result.id, hostname="w1@host")
    result.refresh()
    assert result.return_value == {
        "id": result.id,
        "attempt": 1,
        "status": "RUNNING",
        "worker_ids": ["w1@host"],
    }


def test_a_raising_receiver_changes_no_outcome(caplog: pytest.LogCaptureFixture) -> None:
    from djworker.tasks_framework import task_finished, task_started

    def explode(**kwargs: Any) -> None:
        raise RuntimeError("receiver broke")

    task_started.connect(explode)
    task_finished.connect(explode)
    try:
        result = tasks.calculate_meaning_of_life.enqueue()
        with caplog.at_level(logging.ERROR, logger="djworker"):
            run_in_process(result.id)
    finally:
        task_started.disconnect(explode)
        task_finished.disconnect(explode)
    result.refresh()
    assert (result.status, result.return_value) == (TaskResultStatus.SUCCESSFUL, 42)
    logged = [r for r in caplog.records if r.name == "djworker.signals"]
    assert len(logged) == 2


def test_djangos_log_receivers_see_each_step(caplog: pytest.LogCaptureFixture) -> None:
    logger_name = "django.tasks" if FRAMEWORK == "django.tasks" else "django_tasks"
    with caplog.at_level(logging.DEBUG, logger=logger_name):
        result = tasks.failing_value_error.enqueue()
        run_in_process(result.id)
    records = [r for r in caplog.records if r.name == logger_name and result.id in r.getMessage()]
    assert [r.levelname for r in records] == ["DEBUG", "INFO", "ERROR"]
    assert "state=FAILED" in records[-1].getMessage()


def test_a_task_this_process_does_not_know_fails_and_says_so() -> None:
    result = tasks.noop.enqueue()
    entry = registry.pop(tasks.noop.module_path)
    try:
        run_in_process(result.id)
    finally:
        registry[tasks.noop.module_path] = entry
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    [error] = result.errors
    assert error.exception_class_path == "djworker.exceptions.UnknownTask"
    assert "is not registered in this worker" in error.traceback


def framework_envelope(task_name: str) -> dict[str, Any]:
    from djworker import message

    envelope = message.build(
        task_id="lookup-1", task_name=task_name, args=[], kwargs={}, queue="default", priority=4
    )
    return {**envelope, "django_task": {"backend": "default", "priority": 0}}


def test_a_django_tasks_message_imports_only_paths_inside_installed_apps() -> None:
    import sys

    from djworker.exceptions import UnknownTask
    from djworker.task_lookup import refusal, task_for_message

    assert "this" not in sys.modules
    with pytest.raises(UnknownTask, match="belongs to no installed app, so it is not imported"):
        task_for_message(framework_envelope("this.s"))
    assert "this" not in sys.modules  # (importing it would print the Zen of Python)
    # An @djworker.task message never makes a worker import, even inside an installed app.
    native = framework_envelope("tests.taskapp.framework_tasks.no_such_task")
    del native["django_task"]
    with pytest.raises(UnknownTask, match=r"is not registered in this worker$") as refused:
        task_for_message(native)
    assert refusal(refused.value) == {
        "reason": str(refused.value),
        "exception_class": "UnknownTask",
        "traceback": "",
    }


def test_an_import_that_fails_is_the_refusal_recorded() -> None:
    from djworker.exceptions import UnknownTask
    from djworker.task_lookup import refusal, task_for_message

    envelope = framework_envelope("tests.taskapp.framework_tasks.no_such_task")
    with pytest.raises(UnknownTask, match="could not be imported") as refused:
        task_for_message(envelope)
    recorded = refusal(refused.value)
    assert recorded["exception_class"] == "builtins.ImportError"
    assert "AttributeError" in recorded["traceback"]
    with pytest.raises(UnknownTask, match=r"imports, but is not a django\.tasks task"):
        task_for_message(framework_envelope("tests.taskapp.framework_tasks.TaskContext"))
    # A module that exits on import is an import error too, not the end of the worker.
    exits = framework_envelope("tests.taskapp.exits_on_import.task")
    with pytest.raises(UnknownTask, match="could not be imported: SystemExit") as refused:
        task_for_message(exits)
    assert refusal(refused.value)["exception_class"] == "builtins.SystemExit"


def test_get_result_finds_the_task_of_a_result_this_process_has_not_registered() -> None:
    result = tasks.calculate_meaning_of_life.enqueue()
    registry.pop(tasks.calculate_meaning_of_life.module_path)
    assert default_task_backend.get_result(result.id) == result
    assert isinstance(registry[tasks.calculate_meaning_of_life.module_path], FrameworkTask)


def test_get_result_of_a_task_that_no_longer_imports_says_why() -> None:
    from djworker import result_store

    envelope = framework_envelope("tests.taskapp.framework_tasks.renamed_since")
    result_store.record_enqueued(envelope, backend="default", task_priority=0)
    with pytest.raises(TaskResultDoesNotExist, match="could not be imported") as missing:
        default_task_backend.get_result("lookup-1")
    assert isinstance(missing.value.__cause__.__cause__, ImportError)


@tasks.needs_task_extras
def test_a_retried_run_keeps_the_first_start_and_counts_every_attempt(tmp_path: Any) -> None:
    result = tasks.fail_until.enqueue(str(tmp_path), 2)
    first = run_in_process(result.id, hostname="w1")
    assert first.kind.value == "retry"
    result.refresh()
    assert result.status == TaskResultStatus.READY
    assert [e.exception_class_path for e in result.errors] == ["builtins.ConnectionError"]
    first_start = result.started_at

    run_in_process(result.id, hostname="w2")
    result.refresh()
    assert (result.status, result.return_value) == (TaskResultStatus.SUCCESSFUL, 2)
    assert (result.attempts, result.worker_ids) == (2, ["w1", "w2"])
    assert result.started_at == first_start < result.last_attempted_at
    assert len(result.errors) == 1


# -- checks ----------------------------------------------------------------------------------


def test_the_default_configuration_passes_the_checks() -> None:
    assert list(task_backends["default"].check()) == []


def test_a_queue_no_worker_consumes_is_a_warning() -> None:
    with override_settings(TASKS={"default": {"BACKEND": BACKEND, "QUEUES": ["default", "mail"]}}):
        [warning] = task_backends["default"].check()
    assert warning.id == "djworker.W010"
    assert "['mail']" in warning.msg


def test_a_queue_a_profile_consumes_passes_the_checks() -> None:
    from djworker.models.workers import WorkerProfile

    WorkerProfile.objects.create(name="mailers", queues="mail, other")
    with override_settings(TASKS={"default": {"BACKEND": BACKEND, "QUEUES": ["default", "mail"]}}):
        assert list(task_backends["default"].check()) == []


def test_a_django_broker_on_a_missing_database_is_an_error() -> None:
    with override_settings(
        DJWORKER={"BROKER_URL": "django://", "BROKER_TRANSPORT_OPTIONS": {"database": "queues"}}
    ):
        [error] = task_backends["default"].check()
    assert error.id == "djworker.E011"
    assert "TASKS['default'] publishes through the django:// broker on database 'queues'" in (
        error.msg
    )
    assert "default" in error.msg.partition("(known: ")[2]


def test_a_django_broker_url_from_the_environment_is_checked_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DJWORKER_BROKER_URL", "django://")
    with override_settings(
        DJWORKER={"BROKER_URL": "redis://x/0", "BROKER_TRANSPORT_OPTIONS": {"database": "nope"}}
    ):
        assert [m.id for m in task_backends["default"].check()] == ["djworker.E011"]


def test_the_backend_without_djworker_installed_is_an_error() -> None:
    with override_settings(INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth"]):
        [error] = task_backends["default"].check()
    assert error.id == "djworker.E010"
    assert error.msg == (
        "TASKS['default'] uses djworker.backend.WorkerBackend, but djworker is not in "
        "INSTALLED_APPS"
    )


def test_a_queue_name_djworker_cannot_use_is_an_error_and_unconsumed() -> None:
    with override_settings(TASKS={"default": {"BACKEND": BACKEND, "QUEUES": ["default", "a b"]}}):
        messages = task_backends["default"].check()
    assert [m.id for m in messages] == ["djworker.E012", "djworker.W010"]
    assert "TASKS['default']['QUEUES'] has a name djworker cannot use" in messages[0].msg
    assert "lists ['a b'], which no worker consumes" in messages[1].msg


def test_a_django_broker_on_an_existing_database_alias_passes_the_checks() -> None:
    with override_settings(
        DJWORKER={"BROKER_URL": "django://", "BROKER_TRANSPORT_OPTIONS": {"database": "default"}}
    ):
        assert list(task_backends["default"].check()) == []


def test_the_backend_check_runs_with_djangos_system_checks() -> None:
    from django.core import checks

    with override_settings(TASKS={"default": {"BACKEND": BACKEND, "QUEUES": ["nowhere"]}}):
        ids = [m.id for m in checks.run_checks()]
    assert "djworker.W010" in ids


def test_run_after_in_the_past_is_kept_on_the_result() -> None:
    past = timezone.now() - timedelta(minutes=1)
    result = tasks.noop.using(run_after=past).enqueue()
    assert default_task_backend.get_result(result.id).task.run_after == past


def test_making_the_backend_and_defining_tasks_touches_no_database_or_broker() -> None:
    """Django makes the backend when a ``@task`` decorator runs, at import time."""
    import os
    import subprocess
    import sys

    from tests.integration.harness import ROOT

    script = (
        "import django; django.setup()\n"
        "from djworker.tasks_framework import task, task_backends\n"
        "from tests.taskapp import framework_tasks\n"
        "backend = task_backends['default']\n"
        "framework_tasks.noop.using(priority=5, queue_name='mail')\n"
        "print(type(backend).__name__, 'made without a connection')\n"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        # Nothing listens on port 1: any connection attempt would fail the script.
        "DATABASE_URL": "postgres://postgres@127.0.0.1:1/unreachable",
        "DJWORKER_BROKER_URL": "redis://127.0.0.1:1/0",
    }
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "WorkerBackend made without a connection" in done.stdout


def test_the_message_carries_the_call_as_made_and_a_malformed_one_is_refused() -> None:
    from djworker import message
    from djworker.exceptions import InvalidMessage

    result = tasks.noop.using(priority=-30, queue_name="mail").enqueue()
    payload = json.loads(QueueMessage.objects.get(queue="mail").payload)
    envelope = message.validate(json.loads(base64.b64decode(payload["body"])))
    assert envelope["django_task"] == {"backend": "default", "priority": -30}
    assert envelope["id"] == result.id
    for bad in ({"backend": "default", "priority": 101}, {"backend": ""}, "default"):
        with pytest.raises(InvalidMessage, match="message field 'django_task' must be"):
            message.validate({**envelope, "django_task": bad})
