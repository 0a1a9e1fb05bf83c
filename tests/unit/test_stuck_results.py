"""Old READY results that no message in the broker stands behind are reported.

On the ``django://`` broker of the test database, whose queue table the test fills directly.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from djworker import stuck_results
from djworker.broker import Broker
from djworker.models import QueueMessage, TaskResult
from djworker.stuck_results import STUCK_AFTER_S, StuckResultsWatch, find_stuck

pytestmark = pytest.mark.django_db(transaction=True)

OLD = timedelta(seconds=STUCK_AFTER_S * 2)


def ready_row(queue: str, age: timedelta) -> str:
    row = TaskResult.objects.create(
        id=str(uuid.uuid4()), task_name="t", queue=queue, enqueued_at=timezone.now() - age
    )
    return row.id


def message_in(queue: str) -> None:
    QueueMessage.objects.create(queue=queue, payload="{}")


def test_old_ready_rows_beyond_the_messages_of_their_queue_are_reported() -> None:
    first = ready_row("lost", OLD + timedelta(seconds=1))
    ready_row("lost", OLD)
    ready_row("lost", OLD)
    message_in("lost")
    [stuck] = find_stuck(Broker(url="django://"), ["lost"])
    assert (stuck.old_ready, stuck.held, stuck.without_message) == (3, 1, 2)
    assert stuck.oldest_ids[0] == first
    assert "2 READY result(s)" in stuck.describe() and first in stuck.describe()


def test_young_rows_and_rows_with_their_messages_are_not_reported() -> None:
    ready_row("backlog", OLD)
    message_in("backlog")
    ready_row("fresh", timedelta(seconds=5))
    assert find_stuck(Broker(url="django://"), ["backlog", "fresh"]) == []


def test_the_worker_watch_logs_at_most_every_interval(caplog: pytest.LogCaptureFixture) -> None:
    ready_row("watched", OLD)
    now = [0.0]
    watch = StuckResultsWatch(Broker(url="django://"), lambda: ["watched"], clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="djworker.stuck_results"):
        watch()
        assert not caplog.records  # not at start
        now[0] += stuck_results.CHECK_EVERY_S
        watch()
        watch()
    [record] = caplog.records
    assert "queue=watched: 1 READY result(s)" in record.getMessage()


def test_djworker_status_names_queues_whose_old_ready_rows_have_no_message() -> None:
    ready_row("default", OLD)
    ready_row("default", OLD)
    out = StringIO()
    with pytest.raises(CommandError):  # no live worker: exit 1, after the report
        call_command("djworker", "status", stdout=out)
    assert "warning: queue=default: 2 READY result(s)" in out.getvalue()
    out = StringIO()
    with pytest.raises(CommandError):
        call_command("djworker", "status", "--json", stdout=out)
    [stuck] = json.loads(out.getvalue())["stuck_results"]
    assert (stuck["queue"], stuck["without_message"]) == ("default", 2)
