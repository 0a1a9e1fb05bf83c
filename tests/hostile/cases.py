"""The hostile inputs: one named case per class of bad message, plus a seeded fuzzer.

A case is either a *body* that plain kombu publishes (with the content type, encoding, headers
and compression it names), or a *raw* transport payload: the text a ``django://`` row or a Redis
list item holds, which kombu itself must parse. Every case names a task id where it carries one,
so the test can look at the row it left. Fuzzed envelopes run ``faults.accept`` with a ``key``
kwarg: a fuzzed message that is still valid runs, and must run once.
"""

from __future__ import annotations

import base64
import json
import random
import uuid
import zlib
from dataclasses import dataclass, field
from typing import Any

RAW_BROKERS = ("django", "redis")  # brokers whose transport payload is text kombu parses
FUZZ_TASK = "faults.accept"
#: fuzzed messages per run: with the named cases, over 500 inputs reach each broker (raw
#: payloads only apply to django:// and Redis)
FUZZ_CASES = 640
SEED = 13


@dataclass
class Case:
    """One hostile input."""

    name: str
    body: Any = None
    #: kombu publish options: serializer, content_type, content_encoding, headers, compression
    options: dict[str, Any] = field(default_factory=dict)
    #: a raw transport payload (``django://`` and Redis only) instead of a published body
    raw: str | bytes | None = None
    #: the id of the task whose row this case may touch, if any
    task_id: str | None = None

    def applies_to(self, broker: str) -> bool:
        return self.raw is None or broker in RAW_BROKERS


def envelope(queue: str, task_id: str, task: str = FUZZ_TASK, **fields: Any) -> dict[str, Any]:
    """A valid version-1 envelope, as djworker publishes it, with ``fields`` replaced."""
    return {
        "v": 1,
        "id": task_id,
        "task": task,
        "args": [],
        "kwargs": {"key": task_id},
        "queue": queue,
        "priority": 0,
        "attempt": 0,
        "eta": None,
        "expires": None,
        "time_limit": None,
        "soft_time_limit": None,
        "enqueued_at": "2026-01-01T00:00:00+00:00",
        **fields,
    }


def kombu_payload(body: Any, queue: str, **changes: Any) -> dict[str, Any]:
    """The payload kombu's virtual transports store for ``body`` (JSON, base64 body)."""
    payload = {
        "body": base64.b64encode(json.dumps(body).encode()).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {},
        "properties": {
            "body_encoding": "base64",
            "delivery_info": {"exchange": "", "routing_key": queue},
            "delivery_mode": 2,
            "priority": 0,
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    payload.update(changes)
    return payload


def classes(queue: str, finished_id: str) -> list[Case]:
    """One or more cases per class of bad input; ``finished_id`` is a task that already ran."""
    bomb = zlib.compress(b" " * 200_000_000, 9)  # 200 MB of spaces in about 200 KB
    valid_raw = kombu_payload(envelope(queue, "raw-ok"), queue)
    cases = [
        # 1. refusals the result table cannot store as they are
        Case(
            "v2 with a NUL in args",
            envelope(queue, "c1-nul", v=2, args=["a\x00b"]),
            task_id="c1-nul",
        ),
        Case(
            "NaN in kwargs", envelope(queue, "c1-nan", kwargs={"x": float("nan")}), task_id="c1-nan"
        ),
        Case(
            "a NUL in an unknown task name",
            envelope(queue, "c1-name", task="no.such\x00task"),
            task_id="c1-name",
        ),
        Case("infinity in args", envelope(queue, "c1-inf", args=[float("inf")]), task_id="c1-inf"),
        # 2. transport payloads kombu cannot parse
        Case("a payload that is not JSON", raw="{not json"),
        Case("a payload that is a JSON array", raw="[1, 2, 3]"),
        Case("a payload without properties", raw=json.dumps({"body": "e30=", "headers": {}})),
        Case(
            "a payload whose body is not base64",
            raw=json.dumps({**valid_raw, "body": "***not base64***"}),
        ),
        Case(
            "a payload whose properties are a list",
            raw=json.dumps({**valid_raw, "properties": [1]}),
        ),
        Case("a payload whose headers are a list", raw=json.dumps({**valid_raw, "headers": [1]})),
        Case("a payload of bytes that are not UTF-8", raw=b"\xff\xfe\x00garbage"),
        Case("a payload nested 100000 deep", raw="[" * 100_000 + "]" * 100_000),
        # 3. times outside Python's range
        Case(
            "eta in year 1 at +14:00",
            envelope(queue, "c3-eta-early", eta="0001-01-01T00:00:00+14:00"),
            task_id="c3-eta-early",
        ),
        Case(
            "eta in year 9999 at -14:00",
            envelope(queue, "c3-eta-late", eta="9999-12-31T23:59:59-14:00"),
            task_id="c3-eta-late",
        ),
        Case(
            "enqueued_at in year 1 at +14:00",
            envelope(queue, "c3-enq", enqueued_at="0001-01-01T00:00:00+14:00"),
            task_id="c3-enq",
        ),
        Case(
            "expires in year 9999 at -14:00",
            envelope(queue, "c3-exp", expires="9999-12-31T23:59:59-14:00"),
            task_id="c3-exp",
        ),
        Case(
            "a raw eta header in year 1 at +14:00",
            envelope(queue, "c3-hdr"),
            options={"headers": {"eta": "0001-01-01T00:00:00+14:00"}},
            task_id="c3-hdr",
        ),
        # 4. compression and other encodings, refused before anything is decompressed
        Case(
            "a zlib bomb",
            bomb,
            options={
                "serializer": None,
                "content_type": "application/json",
                "content_encoding": "utf-8",
                "headers": {"compression": "application/x-gzip"},
            },
        ),
        Case(
            "a bz2-compressed envelope", envelope(queue, "c4-bz2"), options={"compression": "bzip2"}
        ),
        Case(
            "a latin-1 content encoding",
            b'{"v": 1}',
            options={
                "serializer": None,
                "content_type": "application/json",
                "content_encoding": "latin-1",
            },
        ),
        Case(
            "a body over the size limit",
            envelope(queue, "c4-big", args=["x" * (5 * 1024 * 1024)]),
            task_id="c4-big",
        ),
        # 6. refusals carrying the id of a task that already finished
        Case(
            "an unknown task with a finished id", envelope(queue, finished_id, task="no.such.task")
        ),
        Case("version 2 with a finished id", envelope(queue, finished_id, task="faults.run", v=2)),
        Case(
            "an expired message with a finished id",
            envelope(
                queue,
                finished_id,
                task="faults.run",
                args=["again"],
                kwargs={},
                expires="2000-01-01T00:00:00+00:00",
            ),
        ),
        # 7. values the database cannot store, sent past .delay()
        Case(
            "a NUL in a valid task's args",
            envelope(queue, "c7-nul", args=["a\x00b"]),
            task_id="c7-nul",
        ),
        Case(
            "a lone surrogate in a valid task's kwargs",
            envelope(queue, "c7-sur", kwargs={"key": "c7-sur", "x": "\ud800"}),
            task_id="c7-sur",
        ),
        Case("a NUL in the task id", envelope(queue, "c7-\x00id"), task_id=None),
    ]
    return cases


# -- the fuzzer -------------------------------------------------------------------------------

_DATES = [
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-14:00",
    "0001-01-01T00:00:00+00:00",
    "2026-01-01T00:00:00",  # no offset
    "2000-01-01T00:00:00+00:00",  # valid, in the past
    "yesterday",
    "",
]


def _hostile_value(rng: random.Random) -> Any:
    choices: list[Any] = [
        None,
        True,
        False,
        0,
        -1,
        2**70,
        -(2**70),
        1e308,
        float("nan"),
        float("inf"),
        0.5,
        "",
        "x" * 300,
        "\x00",
        "a\x00b",
        "\ud800",
        "\udfff\ud800",
        "💥" * 50,
        "\u202e\n\r\t",
        "<script>alert(1)</script>",
        "'; DROP TABLE djworker_taskresult; --",
        [],
        {},
        [[[[[]]]]],
        {"__class__": "os.system"},
        list(range(50)),
        rng.choice(_DATES),
        "".join(chr(rng.randrange(0, 0x110000)) for _ in range(8)),
    ]
    return rng.choice(choices)


_FIELDS = [
    "v",
    "id",
    "task",
    "args",
    "kwargs",
    "queue",
    "priority",
    "attempt",
    "eta",
    "expires",
    "time_limit",
    "soft_time_limit",
    "enqueued_at",
]


def _fuzzed_envelope(rng: random.Random, queue: str, key: str) -> dict[str, Any]:
    body = envelope(queue, key)
    for _ in range(rng.randint(1, 3)):
        name = rng.choice(_FIELDS)
        move = rng.random()
        if move < 0.2:
            body.pop(name, None)
        elif move < 0.35 and name in ("eta", "expires", "enqueued_at"):
            body[name] = rng.choice(_DATES)
        elif move < 0.45:
            body[f"extra-{rng.randrange(100)}"] = _hostile_value(rng)
        elif name == "kwargs":
            # keep the key, so a run that still happens is counted
            body["kwargs"] = {"key": key, "x": _hostile_value(rng)}
        elif name == "args":
            body["args"] = [_hostile_value(rng)] if rng.random() < 0.7 else _hostile_value(rng)
        else:
            body[name] = _hostile_value(rng)
    if "v" in body and body["v"] == 1 and rng.random() < 0.1:
        body["v"] = rng.choice([0, 2, "1", 1.0, None])
    return body


def _text(rng: random.Random, size: int) -> str:
    return "".join(chr(rng.randrange(32, 0x3000)) for _ in range(size))


def fuzz(queue: str, *, count: int = FUZZ_CASES, seed: int = SEED) -> list[Case]:
    """``count`` seeded cases: fuzzed envelopes, bodies and raw payloads (same seed, same list)."""
    rng = random.Random(seed)
    cases = []
    for i in range(count):
        key = f"fz-{i}"
        kind = rng.random()
        if kind < 0.55:
            cases.append(
                Case(f"fuzzed envelope {i}", _fuzzed_envelope(rng, queue, key), task_id=key)
            )
        elif kind < 0.7:
            content_type = rng.choice(
                [
                    "application/json",
                    "application/x-python-serialize",
                    "application/x-yaml",
                    "application/x-msgpack",
                    "text/plain",
                    "application/data",
                    _text(rng, 5),
                ]
            )
            body = rng.choice(
                [
                    rng.randbytes(rng.randrange(1, 64)),
                    b"null",
                    b"[]",
                    b'"text"',
                    b"12345",
                    b'{"v": 1, "id": "' + key.encode() + b'"}',
                    json.dumps(_hostile_value(rng)).encode(),
                    b"\x80\x04\x95\x1a\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x94\x8c\x06system\x94\x93\x94.",
                ]
            )
            encoding = rng.choice(["utf-8", "binary", "latin-1", "UTF-8", _text(rng, 4)])
            cases.append(
                Case(
                    f"fuzzed body {i}",
                    body,
                    options={
                        "serializer": None,
                        "content_type": content_type,
                        "content_encoding": encoding,
                    },
                )
            )
        elif kind < 0.8:
            compression = rng.choice(
                ["application/x-bz2", "application/x-gzip", "zstd", "nonsense", ""]
            )
            options: dict[str, Any] = {"headers": {"compression": compression}}
            if rng.random() < 0.5:
                options["headers"][rng.choice(["eta", "expires", "x"])] = _hostile_value(rng)
            cases.append(
                Case(f"fuzzed headers {i}", envelope(queue, key), options=options, task_id=key)
            )
        else:
            payload = kombu_payload(_fuzzed_envelope(rng, queue, key), queue)
            for _ in range(rng.randint(1, 2)):
                target = rng.choice(["payload", "properties", "body"])
                if target == "payload":
                    payload[
                        rng.choice(
                            ["body", "headers", "content-type", "content-encoding", "properties"]
                        )
                    ] = _hostile_value(rng)
                elif target == "properties" and isinstance(payload.get("properties"), dict):
                    payload["properties"][
                        rng.choice(["body_encoding", "delivery_info", "delivery_tag", "priority"])
                    ] = _hostile_value(rng)
                elif isinstance(payload.get("body"), str) and payload["body"]:
                    cut = rng.randrange(len(payload["body"]))
                    payload["body"] = payload["body"][:cut] + rng.choice(
                        ["*", "=", "", "\x00", "é"]
                    )
            text = json.dumps(payload)
            if rng.random() < 0.15:
                text = text[: rng.randrange(len(text))]
            cases.append(Case(f"fuzzed payload {i}", raw=text, task_id=key))
    return cases
