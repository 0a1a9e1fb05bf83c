"""The consumer, in process on ``memory://``: when each message is acknowledged, requeued,
rejected, held or refused, and what its result row says at that moment.

Tasks run with the real ``execute`` on the solo pool, or on a pool that holds each job until the
test ends it (``HeldPool``). ``recording.answers`` lists what the worker told the broker about a
message, with the row's status at that moment.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

import pytest

import djworker
from djworker import message
from djworker.models import TaskResult, TaskStatus
from djworker.revocation import revoke
from tests.inprocess.conftest import Rig
from tests.inprocess.recording import answers
from tests.taskapp.models import Note

MakeRig = Callable[..., Rig]


@djworker.task(name="inprocess.add")
def add(x: int, y: int) -> int:
    return x + y


@djworker.task(name="inprocess.note")
def note(text: str) -> None:
    Note.objects.create(text=text)


@djworker.task(
    name="inprocess.flaky", max_retries=2, default_retry_delay=30, autoretry_for=(ConnectionError,)
)
def flaky() -> None:
    raise ConnectionError("the mail server is down")


@djworker.task(name="inprocess.survivor", reject_on_worker_lost=True)
def survivor() -> str:
    return "ran"


def row(task_id: str) -> TaskResult:
    return TaskResult.objects.get(id=task_id)


# -- acknowledgement ------------------------------------------------------------------------------


def test_a_message_is_acknowledged_after_its_result_is_stored(make_rig: MakeRig) -> None:
    rig = make_rig(pool="solo")
    result = add.apply_async((2, 3), queue=rig.queue)

    rig.loop()

    assert answers(result.id) == [("publish", 0, "READY"), ("ack", 0, "SUCCESSFUL")]
    assert row(result.id).result == 5
    assert rig.waiting() == 0


def test_a_message_is_not_acknowledged_while_its_task_runs(make_rig: MakeRig) -> None:
    rig = make_rig()
    result = add.apply_async((2, 3), queue=rig.queue)

    rig.loop()
    assert [job.task_id for job in rig.held.held] == [result.id]
    assert answers(result.id) == [("publish", 0, "READY")]

    rig.held.run_next()
    rig.loop()
    assert answers(result.id)[-1] == ("ack", 0, "SUCCESSFUL")


def test_a_retry_is_published_before_the_original_is_acknowledged(make_rig: MakeRig) -> None:
    rig = make_rig(pool="solo")
    result = flaky.apply_async(queue=rig.queue)

    rig.loop()

    actions = [(action, attempt) for action, attempt, _ in answers(result.id)]
    assert actions == [("publish", 0), ("publish", 1), ("ack", 0)]
    assert row(result.id).status == TaskStatus.READY  # waiting for its retry


def test_a_retry_that_cannot_be_published_hands_the_original_back(
    make_rig: MakeRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig = make_rig(pool="solo")
    result = flaky.apply_async(queue=rig.queue)

    def broker_down(envelope: dict[str, Any]) -> None:
        raise ConnectionError("broker down while publishing the retry")

    monkeypatch.setattr(rig.consumer.broker, "publish", broker_down)
    rig.loop(2)  # the run, then its outcome

    actions = [(action, attempt) for action, attempt, _ in answers(result.id)]
    assert actions[:2] == [("publish", 0), ("requeue", 0)]


def test_a_lost_job_with_reject_on_worker_lost_is_requeued_and_runs_again(
    make_rig: MakeRig,
) -> None:
    rig = make_rig()
    result = survivor.apply_async(queue=rig.queue)
    rig.loop()

    rig.held.lose_next("its slot died")
    rig.loop()

    assert answers(result.id)[1] == ("requeue", 0, "READY")
    assert [job.task_id for job in rig.held.held] == [result.id]  # delivered again
    rig.held.run_next()
    rig.loop()
    assert answers(result.id)[-1] == ("ack", 0, "SUCCESSFUL")


def test_a_lost_job_without_reject_on_worker_lost_is_failed_and_acknowledged(
    make_rig: MakeRig,
) -> None:
    rig = make_rig()
    result = add.apply_async((1, 1), queue=rig.queue)
    rig.loop()

    rig.held.lose_next("its slot died")
    rig.loop()

    assert answers(result.id)[1:] == [("ack", 0, "FAILED")]
    assert row(result.id).exception_message == "its slot died"
    assert rig.held.held == []


# -- time -----------------------------------------------------------------------------------------


def test_a_countdown_holds_the_message_until_it_is_due_then_releases_it(
    make_rig: MakeRig,
) -> None:
    rig = make_rig()
    result = add.apply_async((2, 3), queue=rig.queue, countdown=60)
    channel = rig.consumer.connection.default_channel  # type: ignore[union-attr]

    rig.loop()
    assert rig.held.held == []
    assert channel.qos.prefetch_count == 2  # one slot, plus the message held for later

    rig.clock.advance(58)
    rig.loop()
    assert rig.held.held == []

    rig.clock.advance(3)
    rig.loop()
    assert [job.task_id for job in rig.held.held] == [result.id]
    assert channel.qos.prefetch_count == 1
    assert answers(result.id) == [("publish", 0, "READY")]  # held, never acknowledged


def test_an_expired_message_is_failed_without_running(make_rig: MakeRig) -> None:
    rig = make_rig()
    result = add.apply_async((2, 3), queue=rig.queue, expires=10)
    rig.clock.advance(11)

    rig.loop()

    assert rig.held.held == []
    failed = row(result.id)
    assert (failed.status, failed.exception_class) == (TaskStatus.FAILED, "TaskExpired")
    assert failed.exception_message.startswith("expired at ")
    assert answers(result.id)[-1] == ("ack", 0, "FAILED")


def test_a_message_held_for_its_eta_can_still_expire_before_it_is_due(make_rig: MakeRig) -> None:
    rig = make_rig()
    result = add.apply_async((2, 3), queue=rig.queue, countdown=60, expires=30)
    rig.loop()
    rig.clock.advance(61)

    rig.loop()

    assert rig.held.held == []
    assert row(result.id).exception_class == "TaskExpired"


# -- refusals -------------------------------------------------------------------------------------


def envelope(**changes: Any) -> dict[str, Any]:
    body = message.build(
        task_id=str(uuid.uuid4()),
        task_name=add.name,
        args=[1, 2],
        kwargs={},
        queue="default",
        priority=0,
    )
    body.update(changes)
    return body


@pytest.mark.parametrize(
    ("changes", "exception_class", "reason"),
    [
        pytest.param(
            {"task": "inprocess.nope"},
            "UnknownTask",
            "task 'inprocess.nope' is not registered in this worker",
            id="unknown-task",
        ),
        pytest.param(
            {"v": 99},
            "InvalidMessage",
            "message version 99 is not supported (expected 1)",
            id="bad-version",
        ),
        pytest.param(
            {"args": "1,2"},
            "InvalidMessage",
            "message field 'args' has the wrong type: '1,2'",
            id="malformed-field",
        ),
        pytest.param(
            {"priority": 42},
            "InvalidMessage",
            "message priority 42 is outside 0..9",
            id="priority-out-of-range",
        ),
    ],
)
def test_a_refused_message_is_rejected_and_its_row_names_what_was_refused(
    make_rig: MakeRig, changes: dict[str, Any], exception_class: str, reason: str
) -> None:
    rig = make_rig()
    body = envelope(queue=rig.queue, **changes)
    rig.publish_raw(body, serializer="json")

    rig.loop()

    assert rig.held.held == []
    refused = row(body["id"])
    assert (refused.status, refused.exception_class) == (TaskStatus.FAILED, exception_class)
    assert refused.exception_message == reason
    assert answers(body["id"])[-1] == ("reject", int(body["attempt"]), "FAILED")


def test_a_body_that_is_not_an_object_is_rejected_naming_its_type(
    make_rig: MakeRig, caplog: pytest.LogCaptureFixture
) -> None:
    rig = make_rig()
    rig.publish_raw(["inprocess.add", 1, 2], serializer="json")

    with caplog.at_level(logging.ERROR, logger="djworker"):
        rig.loop()

    assert rig.held.held == []
    assert rig.waiting() == 0
    assert "message body must be a JSON object; got list" in caplog.text


def test_a_body_in_a_refused_format_is_rejected_naming_its_content_type(
    make_rig: MakeRig, caplog: pytest.LogCaptureFixture
) -> None:
    rig = make_rig()
    rig.publish_raw(
        b"\x80\x04not json",
        content_type="application/x-python-serialize",
        content_encoding="binary",
    )

    with caplog.at_level(logging.ERROR, logger="djworker"):
        rig.loop()

    assert rig.held.held == []
    assert rig.waiting() == 0
    assert "content_type='application/x-python-serialize'" in caplog.text


# -- delivery cap and revocation ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("runs_before", "runs"), [pytest.param(1, True, id="under"), pytest.param(2, False, id="over")]
)
def test_the_delivery_cap_refuses_a_message_whose_runs_used_it_up(
    make_rig: MakeRig, runs_before: int, runs: bool
) -> None:
    rig = make_rig(pool="solo", max_deliveries=2)
    result = note.apply_async(("capped",), queue=rig.queue)
    # Earlier deliveries started runs that never finished (their process died).
    TaskResult.objects.filter(id=result.id).update(
        status=TaskStatus.RUNNING, deliveries=runs_before
    )

    rig.loop()

    assert Note.objects.filter(text="capped").exists() is runs
    outcome = row(result.id)
    if runs:
        assert answers(result.id)[-1] == ("ack", 0, "SUCCESSFUL")
        return
    assert outcome.exception_class == "DeliveryLimitExceeded"
    assert outcome.exception_message == (
        "not run: delivery 3 is over max_deliveries=2 (worker max_deliveries, from cli); "
        "its earlier runs never finished"
    )
    assert answers(result.id)[-1] == ("reject", 0, "FAILED")


def test_a_revoked_task_is_not_run_and_its_message_is_acknowledged(make_rig: MakeRig) -> None:
    rig = make_rig(pool="solo")
    result = note.apply_async(("revoked",), queue=rig.queue)
    revoke(result.id, by="ops")

    rig.loop()

    assert not Note.objects.filter(text="revoked").exists()
    assert row(result.id).exception_class == "TaskRevoked"
    assert answers(result.id)[-1] == ("ack", 0, "FAILED")
