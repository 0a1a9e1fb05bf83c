"""The message envelope: JSON only, versioned, validated when published and when received.

An envelope is a plain dict, typed as ``Envelope``, so it crosses every boundary (broker, pipe to a
child process) as is::

    {"v": 1, "id": "...", "task": "app.tasks.add", "args": [1, 2], "kwargs": {},
     "queue": "default", "priority": 0, "attempt": 0, "eta": null, "expires": null,
     "time_limit": null, "soft_time_limit": null, "enqueued_at": "2026-11-21T02:00:00+00:00"}

``attempt`` counts earlier runs (0 on the first delivery of a fresh call). A call made through
django.tasks (``djworker.backend.WorkerBackend``) also carries ``"django_task": {"backend":
alias, "priority": -100..100}``, so the worker can show the call as it was made without
reading its row first.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any, NotRequired, TypedDict, cast

from djworker.exceptions import InvalidMessage

VERSION = 1
MIN_PRIORITY = 0
MAX_PRIORITY = 9
CONTENT_TYPE = "application/json"


class DjangoTaskField(TypedDict):
    """What a call made through django.tasks adds to its envelope."""

    backend: str
    #: the django.tasks priority, -100..100
    priority: int


class Envelope(TypedDict):
    """A validated message body, as ``build`` makes it and ``validate`` returns it.

    The optional keys may be absent from a message another publisher (or an older djworker)
    sent, so they are read with ``.get()``.
    """

    v: int
    id: str
    task: str
    args: list[Any]
    kwargs: dict[str, Any]
    queue: str
    priority: int
    attempt: int
    #: ISO-8601 times with a UTC offset
    eta: NotRequired[str | None]
    expires: NotRequired[str | None]
    enqueued_at: NotRequired[str | None]
    #: seconds
    time_limit: NotRequired[float | None]
    soft_time_limit: NotRequired[float | None]
    django_task: NotRequired[DjangoTaskField]


_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "v": int,
    "id": str,
    "task": str,
    "args": list,
    "kwargs": dict,
    "queue": str,
    "priority": int,
    "attempt": int,
}
#: longest id, task name and queue name the ``TaskResult`` columns hold; a longer one would make
#: every write of the run fail, and the message would come back again and again
MAX_LENGTHS = {"id": 64, "task": 255, "queue": 200}
_OPTIONAL_TIMES = ("eta", "expires", "enqueued_at")
#: the times a message may carry, in UTC: a day inside Python's range, so neither a UTC offset
#: nor a day's arithmetic can push one out of it (year 1 at +14:00 is year 0 in UTC, which
#: neither Python nor the result table's readers can hold)
EARLIEST = datetime(1, 1, 2, tzinfo=UTC)
LATEST = datetime(9999, 12, 30, tzinfo=UTC)
#: the largest JSON body a worker takes and a publisher sends, in bytes
MAX_BODY_BYTES = 4 * 1024 * 1024
_OPTIONAL_SECONDS = ("time_limit", "soft_time_limit")


def ensure_json(args: Any, kwargs: Any) -> None:
    """Raise ``TypeError`` at the call site if JSON cannot carry the arguments unchanged.

    Also for values JSON carries but the database cannot store, so that nothing is written:
    a failed write would abort the caller's transaction, or fail after its commit.
    """
    problem = unstorable({"args": list(args), "kwargs": dict(kwargs)})
    if problem is not None:
        raise TypeError(f"task argument {problem}; arguments must be JSON the database can store")
    try:
        encoded = json.dumps([args, kwargs], allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"task arguments must be JSON-serialisable: {exc}") from None
    if json.loads(encoded) != [list(args), dict(kwargs)]:
        # tuples become lists, which compare equal; anything else that changes on the way
        # (e.g. int dict keys turned into strings) would reach the task altered.
        raise TypeError(
            "task arguments must survive a JSON round trip unchanged "
            f"(dict keys must be strings); got args={args!r} kwargs={kwargs!r}"
        )
    if len(encoded) > MAX_BODY_BYTES:
        raise TypeError(
            f"task arguments take {len(encoded)} bytes as JSON; at most {MAX_BODY_BYTES} "
            "are allowed in a message"
        )


def unstorable(value: Any, path: str = "") -> str | None:
    """Where ``value`` holds something the database cannot store, and what; None if nothing.

    PostgreSQL's text and JSON refuse a NUL character, and its JSON refuses NaN and infinity;
    no database stores a lone surrogate as UTF-8. Walks without recursion, so a deeply nested
    message cannot exhaust the stack.
    """
    stack: list[tuple[str, Any]] = [(path, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return f"{where or 'value'} contains a NUL character: {item[:80]!r}"
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return f"{where or 'value'} contains a lone surrogate: {item[:80]!r}"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return f"{where or 'value'} is {item!r}, not a finite number"
        elif isinstance(item, dict):
            for key, child in item.items():
                stack.append((f"{where}[{key!r}]" if where else str(key), child))
                stack.append((f"{where} key {key!r}" if where else "key", key))
        elif isinstance(item, list | tuple):
            stack.extend((f"{where}[{i}]", child) for i, child in enumerate(item))
    return None


def build(
    *,
    task_id: str,
    task_name: str,
    args: list[Any],
    kwargs: dict[str, Any],
    queue: str,
    priority: int,
    attempt: int = 0,
    eta: datetime | None = None,
    expires: datetime | None = None,
    time_limit: float | None = None,
    soft_time_limit: float | None = None,
    enqueued_at: datetime | None = None,
) -> Envelope:
    envelope: Envelope = {
        "v": VERSION,
        "id": task_id,
        "task": task_name,
        "args": list(args),
        "kwargs": dict(kwargs),
        "queue": queue,
        "priority": priority,
        "attempt": attempt,
        "eta": eta.isoformat() if eta else None,
        "expires": expires.isoformat() if expires else None,
        "time_limit": time_limit,
        "soft_time_limit": soft_time_limit,
        "enqueued_at": enqueued_at.isoformat() if enqueued_at else None,
    }
    validate(envelope)
    return envelope


def validate(body: Any) -> Envelope:
    """Return the envelope if it is one this version can run; raise ``InvalidMessage`` if not."""
    if not isinstance(body, dict):
        raise InvalidMessage(f"message body must be a JSON object; got {type(body).__name__}")
    version = body.get("v")
    if version != VERSION:
        raise InvalidMessage(f"message version {version!r} is not supported (expected {VERSION})")
    for key, kind in _REQUIRED.items():
        if key not in body:
            raise InvalidMessage(f"message is missing {key!r}")
        value = body[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise InvalidMessage(f"message field {key!r} has the wrong type: {value!r}")
    if not body["id"] or not body["task"]:
        raise InvalidMessage("message id and task name must not be empty")
    for key, longest in MAX_LENGTHS.items():
        if len(body[key]) > longest:
            raise InvalidMessage(
                f"message field {key!r} is {len(body[key])} characters long; "
                f"at most {longest} are allowed: {body[key][:80]!r}..."
            )
    if not MIN_PRIORITY <= body["priority"] <= MAX_PRIORITY:
        raise InvalidMessage(
            f"message priority {body['priority']!r} is outside {MIN_PRIORITY}..{MAX_PRIORITY}"
        )
    if body["attempt"] < 0:
        raise InvalidMessage(f"message attempt {body['attempt']!r} is negative")
    problem = unstorable({key: body[key] for key in _REQUIRED})
    if problem is not None:
        raise InvalidMessage(f"message field {problem}; the result table cannot store it")
    for key in _OPTIONAL_TIMES:
        parse_time(body.get(key), key)
    for key in _OPTIONAL_SECONDS:
        value = body.get(key)
        if value is not None and (
            not isinstance(value, int | float) or isinstance(value, bool) or value <= 0
        ):
            raise InvalidMessage(f"message field {key!r} must be a positive number; got {value!r}")
    framework = body.get("django_task")
    if framework is not None and not _is_django_task_field(framework):
        raise InvalidMessage(
            "message field 'django_task' must be {'backend': alias of at most 64 characters, "
            f"'priority': integer from -100 to 100}}; got {framework!r}"[:300]
        )
    return cast(Envelope, body)


def _is_django_task_field(value: Any) -> bool:
    if not isinstance(value, dict) or set(value) != {"backend", "priority"}:
        return False
    backend, priority = value["backend"], value["priority"]
    return (
        isinstance(backend, str)
        and 0 < len(backend) <= 64
        and isinstance(priority, int)
        and not isinstance(priority, bool)
        and -100 <= priority <= 100
    )


def parse_time(value: Any, key: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidMessage(f"message field {key!r} must be an ISO-8601 string; got {value!r}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidMessage(f"message field {key!r} is not an ISO-8601 time: {value!r}") from None
    if moment.tzinfo is None:
        raise InvalidMessage(f"message field {key!r} must carry a UTC offset: {value!r}")
    problem = out_of_range(moment)
    if problem is not None:
        raise InvalidMessage(f"message field {key!r} {problem}: {value!r}")
    return moment


def out_of_range(moment: datetime) -> str | None:
    """Why an aware time cannot be carried (outside ``EARLIEST``..``LATEST``); None if it can."""
    try:
        utc = moment.astimezone(UTC)
    except (OverflowError, ValueError):
        utc = None
    if utc is None or not EARLIEST <= utc <= LATEST:
        return (
            f"is outside {EARLIEST.date().isoformat()}..{LATEST.date().isoformat()} "
            "in UTC, the times a message may carry"
        )
    return None
