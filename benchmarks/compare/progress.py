"""How many no-ops an implementation has finished, and where each unfinished one sits.

Read straight from the implementation's own tables and Redis keys, never through its API, so
the runner's polling costs every implementation the same one query.
"""

from __future__ import annotations

import json
from base64 import b64decode
from collections import Counter
from typing import Any

import psycopg
import redis

from benchmarks.compare.implementations import Implementation

#: SQL counting finished (successful) no-ops in each implementation's database
FINISHED_SQL = {
    "djworker": "select count(*) from djworker_taskresult where status = 'SUCCESSFUL'",
    "celery": "select count(*) from django_celery_results_taskresult where status = 'SUCCESS'",
    "huey": "select count(*) from huey_kv",
    "tasksdb": "select count(*) from django_tasks_database_dbtaskresult"
    " where status = 'SUCCESSFUL'",
}


def finished(conn: psycopg.Connection[Any], implementation: Implementation) -> int:
    row = conn.execute(FINISHED_SQL[implementation.tables]).fetchone()  # type: ignore[arg-type]
    return int(row[0]) if row else 0


def locate(
    conn: psycopg.Connection[Any],
    broker: redis.Redis | None,
    implementation: Implementation,
    queue: str,
    ids: list[str],
) -> dict[str, str]:
    """Where each task of ``ids`` that has not finished sits, in words; finished ones left out."""
    status = _result_status(conn, implementation, ids)
    queued, reserved = _broker_places(conn, broker, implementation, queue)
    places: dict[str, str] = {}
    for task_id in ids:
        row = status.get(task_id)
        if row in ("SUCCESSFUL", "SUCCESS", "stored"):
            continue
        where = []
        if any(task_id in text for text in queued):
            where.append("in the broker queue")
        if any(task_id in text for text in reserved):
            where.append("reserved by a worker, not acknowledged")
        if implementation.tables == "huey" and not where:
            where.append("taken from the queue (huey deletes it then), no result")
        where.append(f"result row {row}" if row else "no result row")
        places[task_id] = "; ".join(where)
    return places


def summary(places: dict[str, str], shown: int = 20) -> str:
    """A readable account of ``locate``'s answer: counts per place, then the first ids."""
    lines = [f"{count} task(s): {where}" for where, count in Counter(places.values()).items()]
    lines += [f"  {task_id}: {where}" for task_id, where in list(places.items())[:shown]]
    if len(places) > shown:
        lines.append(f"  ... and {len(places) - shown} more")
    return "\n".join(lines)


def _result_status(
    conn: psycopg.Connection[Any], implementation: Implementation, ids: list[str]
) -> dict[str, str]:
    if implementation.tables == "huey":
        rows = conn.execute("select key from huey_kv where key = any(%s)", [ids]).fetchall()
        return {key: "stored" for (key,) in rows}
    sql = {
        "djworker": "select id, status from djworker_taskresult where id = any(%s)",
        "celery": "select task_id, status from django_celery_results_taskresult"
        " where task_id = any(%s)",
        "tasksdb": "select id::text, status from django_tasks_database_dbtaskresult"
        " where id::text = any(%s)",
    }[implementation.tables]
    return {str(task_id): str(status) for task_id, status in conn.execute(sql, [ids])}  # type: ignore[arg-type]


def _broker_places(
    conn: psycopg.Connection[Any],
    broker: redis.Redis | None,
    implementation: Implementation,
    queue: str,
) -> tuple[list[str], list[str]]:
    """(texts of the queued messages, texts of the delivered-but-unacknowledged ones)."""
    if broker is not None:
        queued = [
            _readable(item)
            for key in broker.scan_iter()  # the implementation's own database: every list
            if broker.type(key) == b"list"
            for item in broker.lrange(key, 0, -1)
        ]
        reserved = [_readable(item) for item in broker.hvals("unacked")]
        return queued, reserved
    if implementation.tables == "djworker":
        rows = conn.execute(
            "select payload, lease <> '' or visible_at > now() from djworker_queuemessage"
            " where queue = %s",
            [queue],
        ).fetchall()
        return [p for p, leased in rows if not leased], [p for p, leased in rows if leased]
    if implementation.tables == "huey":
        rows = conn.execute("select data from huey_task where queue = %s", [queue]).fetchall()
        return [bytes(data).decode("latin-1") for (data,) in rows], []
    return [], []  # django-tasks-db: the row is the queue; its status says it all


def _readable(raw: bytes | str) -> str:
    """A kombu Redis message as text, its body decoded if base64, so ids can be found in it."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    try:
        message = json.loads(text)
        if isinstance(message, list):  # an ``unacked`` entry: [payload, exchange, routing key]
            message = message[0]
            text = json.dumps(message)
        if message.get("properties", {}).get("body_encoding") == "base64":
            text += b64decode(message["body"]).decode("utf-8", "replace")
    except (ValueError, AttributeError, TypeError):
        pass
    return text
