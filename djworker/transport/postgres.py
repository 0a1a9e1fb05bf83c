"""The ``django://`` transport's hot statements on PostgreSQL, one round trip each.

A consumer claims and settles thousands of messages a second; through the ORM each claim took
a transaction of four statements and each settle one more, and compiling them cost as much as
running them. Here a publish is a single ``INSERT`` that also notifies (one ``INSERT`` for a
batch of publishes too), a claim a single ``UPDATE ... RETURNING`` and a batch of acks a single
``DELETE``, each its own autocommit transaction (or part of the caller's, if one is open).

The publish keeps the server's full durability: a lost insert is a lost message. Claim and
delete relax their own commit (``set_config('synchronous_commit', 'off', true)`` in the same
statement) for the reason ``database.redeliverable_transaction`` gives: losing either in a
database crash only causes a redelivery. Inside a transaction the caller opened they run
without relaxing it, so the caller's transaction keeps its durability.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db import connections

from djworker.models.broker import QueueMessage

# Evaluated once per statement, in the statement's own transaction; joining it in makes the
# planner run it before any row is written.
RELAXED_COMMIT = "(SELECT set_config('synchronous_commit', 'off', true) AS relaxed) AS r"
KEEP_COMMIT = "(SELECT '' AS relaxed) AS r"

CLAIM_SQL = """
UPDATE {table} AS m
SET lease = %s || m.id::text, visible_at = %s, deliveries = m.deliveries + 1
FROM {commit}, (
    SELECT id, priority, visible_at FROM {table}
    WHERE queue = %s AND visible_at <= %s
    ORDER BY priority DESC, visible_at, id
    LIMIT %s
    FOR UPDATE SKIP LOCKED
) AS c
WHERE m.id = c.id AND r.relaxed IS NOT NULL
RETURNING m.id, m.payload, m.deliveries, c.priority, c.visible_at
"""

# The columns of one message, in the order of ``_values``.
INSERT_ROW = "(%s, %s, %s, %s, %s, %s, %s)"

# One row per message, one NOTIFY, delivered on commit: no consumer wakes before it can see
# the rows.
INSERT_SQL = """
WITH inserted AS (
    INSERT INTO {table} (queue, priority, payload, visible_at, created_at, lease, deliveries)
    VALUES {rows}
    RETURNING id
)
SELECT pg_notify(%s, '') FROM (SELECT 1 FROM inserted LIMIT 1) AS any_inserted
"""

DELETE_SQL = """
DELETE FROM {table} AS m USING {commit}
WHERE m.id = ANY(%s) AND m.lease = ANY(%s) AND r.relaxed IS NOT NULL
"""


def _statement(template: str, alias: str) -> str:
    connection = connections[alias]
    table = connection.ops.quote_name(QueueMessage._meta.db_table)
    commit = KEEP_COMMIT if connection.in_atomic_block else RELAXED_COMMIT
    return template.format(table=table, commit=commit)


def _values(row: QueueMessage) -> list[Any]:
    """The values of ``INSERT_ROW``, in its order."""
    return [
        row.queue,
        row.priority,
        row.payload,
        row.visible_at,
        row.created_at,
        row.lease,
        row.deliveries,
    ]


def insert(alias: str, row: QueueMessage, *, notify: str) -> None:
    """Insert ``row`` and NOTIFY channel ``notify`` in one statement, durably."""
    insert_many(alias, [row], notify=notify)


def insert_many(alias: str, rows: Sequence[QueueMessage], *, notify: str) -> None:
    """Insert ``rows`` and NOTIFY channel ``notify`` in one statement, durably: all or none."""
    if not rows:
        return
    table = connections[alias].ops.quote_name(QueueMessage._meta.db_table)
    params = [value for row in rows for value in _values(row)]
    statement = INSERT_SQL.format(table=table, rows=", ".join([INSERT_ROW] * len(rows)))
    with connections[alias].cursor() as cursor:
        cursor.execute(statement, [*params, notify])


def claim(
    alias: str, *, queue: str, limit: int, token: str, now: datetime, until: datetime
) -> list[tuple[int, str, int]]:
    """Lease up to ``limit`` visible messages of ``queue``, skipping rows others have locked.

    Each row's lease becomes ``token`` followed by its id. Returns ``(id, payload,
    deliveries)`` in delivery order: highest priority first, then longest due, then oldest.
    """
    with connections[alias].cursor() as cursor:
        cursor.execute(_statement(CLAIM_SQL, alias), [token, until, queue, now, limit])
        rows: list[tuple[Any, ...]] = cursor.fetchall()
    rows.sort(key=lambda row: (-row[3], row[4], row[0]))
    return [(row[0], row[1], row[2]) for row in rows]


def delete_settled(alias: str, *, message_ids: Sequence[int], leases: Sequence[str]) -> int:
    """Delete the rows of settled leases still holding them; return how many went."""
    with connections[alias].cursor() as cursor:
        cursor.execute(_statement(DELETE_SQL, alias), [list(message_ids), list(leases)])
        return int(cursor.rowcount)
