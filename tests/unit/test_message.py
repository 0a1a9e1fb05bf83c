from __future__ import annotations

import datetime as dt
import re

import pytest

from djworker import message
from djworker.exceptions import InvalidMessage


def envelope(**overrides: object) -> dict[str, object]:
    body = message.build(
        task_id="abc",
        task_name="app.tasks.add",
        args=[1, 2],
        kwargs={},
        queue="default",
        priority=0,
    )
    body.update(overrides)
    return body


def test_a_built_envelope_is_valid_and_versioned() -> None:
    body = envelope()
    assert body["v"] == message.VERSION
    assert message.validate(body) is body


@pytest.mark.parametrize(
    ("overrides", "complaint"),
    [
        ({"v": 2}, "version 2 is not supported"),
        ({"v": None}, "version None"),
        ({"task": ""}, "must not be empty"),
        ({"args": "1,2"}, "'args' has the wrong type"),
        ({"kwargs": []}, "'kwargs' has the wrong type"),
        ({"priority": 10}, "outside 0..9"),
        ({"priority": True}, "'priority' has the wrong type"),
        ({"attempt": -1}, "negative"),
        ({"eta": "tomorrow"}, "not an ISO-8601 time"),
        ({"eta": "2026-01-01T00:00:00"}, "must carry a UTC offset"),
        ({"time_limit": 0}, "must be a positive number"),
        ({"id": "i" * 65}, "'id' is 65 characters long; at most 64"),
        ({"task": "t" * 256}, "'task' is 256 characters long; at most 255"),
        ({"queue": "q" * 201}, "'queue' is 201 characters long; at most 200"),
    ],
)
def test_a_malformed_envelope_is_refused_with_its_reason(
    overrides: dict[str, object], complaint: str
) -> None:
    with pytest.raises(InvalidMessage, match=complaint):
        message.validate(envelope(**overrides))


def test_a_body_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(InvalidMessage, match="must be a JSON object"):
        message.validate(["not", "a", "dict"])


def test_a_missing_field_is_named() -> None:
    body = envelope()
    del body["queue"]
    with pytest.raises(InvalidMessage, match="missing 'queue'"):
        message.validate(body)


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ([object()], {}),
        ([], {"when": dt.datetime(2026, 1, 1)}),
        ([{1: "int keys become strings"}], {}),
        ([float("nan")], {}),
        ([b"bytes"], {}),
    ],
)
def test_arguments_json_cannot_carry_unchanged_raise_type_error(
    args: list[object], kwargs: dict[str, object]
) -> None:
    with pytest.raises(TypeError, match="JSON"):
        message.ensure_json(args, kwargs)


def test_tuples_and_nested_json_values_are_accepted() -> None:
    message.ensure_json((1, "a", [2.5, None], {"k": True}), {"x": {"y": [1]}})


@pytest.mark.parametrize(
    ("args", "kwargs", "named"),
    [
        (["a\x00b"], {}, "args[0] contains a NUL character"),
        ([], {"x": "\ud800"}, "kwargs['x'] contains a lone surrogate"),
        ([{"k\x00": 1}], {}, "args[0] key 'k\\x00' contains a NUL character"),
        ([[1, [float("nan")]]], {}, "args[0][1][0] is nan"),
    ],
)
def test_arguments_the_database_cannot_store_raise_type_error_naming_the_argument(
    args: list[object], kwargs: dict[str, object], named: str
) -> None:
    with pytest.raises(TypeError, match=re.escape(named)):
        message.ensure_json(args, kwargs)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("args", ["a\x00b"]),
        ("kwargs", {"x": float("nan")}),
        ("task", "no.such\x00task"),
        ("id", "x\ud800"),
        ("eta", "0001-01-01T00:00:00+14:00"),
        ("expires", "9999-12-31T23:59:59-14:00"),
        ("enqueued_at", "0001-01-01T00:00:00+14:00"),
    ],
)
def test_a_received_value_the_database_cannot_store_is_refused(field: str, value: object) -> None:
    with pytest.raises(InvalidMessage, match=field):
        message.validate(envelope(**{field: value}))


def test_times_at_the_edges_of_the_carried_range_are_accepted() -> None:
    message.validate(envelope(eta="0001-01-02T00:00:00+00:00", expires="9999-12-30T00:00:00Z"))
