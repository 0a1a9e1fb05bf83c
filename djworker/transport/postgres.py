"""The ``django://`` transport's statements on PostgreSQL, one round trip each.

A consumer claims and settles thousands of messages a second; through the ORM each claim took
a transaction of four statements and each settle one more, and compiling them cost as much as
running them. Here a publish is a single ``INSERT`` that also notifies, a claim a single
``UPDATE ... RETURNING`` and a batch of acks a single ``DELETE``, each its own autocommit
transaction (or part of the caller's, if one is open).

**Dead rows.** Every claim and every ack leaves a dead row version behind until VACUUM removes
it; between two autovacuum runs (or with autovacuum off) a busy queue has hundreds of thousands.
The statements here read the partial indexes of migration 0014, which hold only unleased rows
(``lease = ''``) or only leased ones, in an order that keeps dead versions out of the ranges
the frequent statements read: the idle wait looks only at unleased rows due in the *future*,
and every dead unleased version was due in the past. See ``docs/brokers.md`` for the figures.

**Durability.** The publish keeps the server's full durability: a lost insert is a lost
message. Claim, release and delete relax their own commit (``set_config('synchronous_commit',
'off', true)`` in the same statement) for the reason ``database.redeliverable_transaction``
gives: losing one in a database crash only causes a redelivery. Inside a transaction the
caller opened they run without relaxing it, so the caller's transaction keeps its durability.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar

from django.db import connections
from django.utils import timezone

from djworker.message import MAX_PRIORITY
from djworker.models.broker import QueueMessage
from djworker.transport.listener import notify_channel
from djworker.transport.operations import Claim, Outgoing, QueueOperations

# Evaluated once per statement, in the statement's own transaction; joining it in makes the
# planner run it before any row is written.
RELAXED_COMMIT = "(SELECT set_config('synchronous_commit', 'off', true) AS relaxed) AS r"
KEEP_COMMIT = "(SELECT '' AS relaxed) AS r"

# Reads djworker_qmsg_ready_idx, one priority after the other (highest first), each a range of
# due times: from "window" seconds ago if the caller knows nothing older is waiting, else from
# the start. The outer LIMIT stops the loop as soon as it has enough rows, so no row beyond
# the batch is locked. Times are the database's, so a worker's clock does not matter.
CLAIM_SQL = """
UPDATE {table} AS m
SET lease = %s || m.id::text, visible_at = %s, deliveries = m.deliveries + 1
FROM {commit}, (
    SELECT c.id, c.priority, c.visible_at
    FROM unnest(%s::smallint[]) AS p(priority), LATERAL (
        SELECT id, priority, visible_at FROM {table}
        WHERE queue = %s AND lease = '' AND priority = p.priority
            AND visible_at >= statement_timestamp() - make_interval(secs => %s)
            AND visible_at <= statement_timestamp()
        ORDER BY visible_at, id
        LIMIT %s
        FOR UPDATE SKIP LOCKED
    ) AS c
    LIMIT %s
) AS c
WHERE m.id = c.id AND r.relaxed IS NOT NULL
RETURNING m.id, m.payload, m.deliveries, c.priority, c.visible_at
"""
PRIORITIES_HIGH_FIRST = list(range(MAX_PRIORITY, -1, -1))
# make_interval's largest useful value: every row ever stored
WHOLE_QUEUE_S = 1e9

# Reads djworker_qmsg_leased_idx. A lease that was renewed meanwhile no longer matches when
# PostgreSQL re-checks the row under its lock, so a live worker's message is never taken.
RELEASE_SQL = """
WITH released AS (
    UPDATE {table} AS m SET lease = '', visible_at = statement_timestamp()
    FROM {commit}
    WHERE m.queue = %s AND m.lease <> '' AND m.visible_at <= statement_timestamp()
        AND r.relaxed IS NOT NULL
    RETURNING m.id
)
SELECT count(*), pg_notify(%s, '') FROM released HAVING count(*) > 0
"""

# Reads djworker_qmsg_due_idx, from now on: dead unleased versions all lie before now.
NEXT_DUE_SQL = """
SELECT min(n.visible_at) FROM unnest(%s::text[]) AS q(name), LATERAL (
    SELECT visible_at FROM {table}
    WHERE queue = q.name AND lease = '' AND visible_at > %s
    ORDER BY visible_at LIMIT 1
) AS n
"""

# NOTIFY is delivered on commit, so no consumer wakes before it can see the rows. A
# data-modifying WITH runs to completion whether or not the SELECT reads it. The rows come as
# one JSON document, whatever their number: the driver sends it as one escaped string, where a
# parameter per value (or an array per column) cost the publisher more than the insert itself.
# A message due now has no visible_at and is stamped with the database's clock, so the claim's
# window (see CLAIM_SQL) holds it whatever the publisher's clock says.
INSERT_SQL = """
WITH inserted AS (
    INSERT INTO {table} (queue, priority, payload, visible_at, created_at, lease, deliveries)
    SELECT m.queue, m.priority, m.payload, coalesce(m.visible_at, statement_timestamp()),
        m.created_at, '', 0
    FROM ROWS FROM (json_to_recordset(%s::json) AS (
        queue text, priority smallint, payload text, visible_at timestamptz, created_at timestamptz
    )) WITH ORDINALITY AS m(queue, priority, payload, visible_at, created_at, n)
    ORDER BY m.n
)
SELECT pg_notify(n.channel, n.due) FROM unnest(%s::text[], %s::text[]) AS n(channel, due)
"""

DELETE_SQL = """
DELETE FROM {table} AS m USING {commit}
WHERE m.id = ANY(%s) AND m.lease = ANY(%s) AND r.relaxed IS NOT NULL
"""


def notify_payload(due: datetime | None) -> str:
    """What a NOTIFY says about the messages it announces: '' if one is due now, else when.

    A consumer then knows when to look for a countdown message without asking the database.
    """
    if due is None:
        return ""
    if timezone.is_naive(due):  # USE_TZ = False: the database holds local times
        due = timezone.make_aware(due)
    return repr(due.timestamp())


class PostgresOperations(QueueOperations):
    """The statements of ``QueueOperations`` as single PostgreSQL round trips, with NOTIFY."""

    listens: ClassVar[bool] = True
    default_polling_interval_s: ClassVar[float] = 1.0

    def _statement(self, template: str, **parts: str) -> str:
        connection = connections[self.alias]
        table = connection.ops.quote_name(QueueMessage._meta.db_table)
        inside_callers = connection.in_atomic_block or not connection.get_autocommit()
        commit = KEEP_COMMIT if inside_callers else RELAXED_COMMIT
        return template.format(table=table, commit=commit, **parts)

    def _run(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with connections[self.alias].cursor() as cursor:
            cursor.execute(sql, params)
            return list(cursor.fetchall()) if cursor.description else []

    def insert(self, rows: Sequence[Outgoing]) -> None:
        """Insert ``rows`` and NOTIFY each of their queues, in one statement, durably."""
        documented: list[dict[str, Any]] = []
        first_due: dict[str, datetime | None] = {}
        for row in rows:
            due = row.visible_at if row.visible_at > row.created_at else None
            documented.append(
                {
                    "queue": row.queue,
                    "priority": row.priority,
                    "payload": row.payload,
                    "visible_at": None if due is None else due.isoformat(),
                    "created_at": row.created_at.isoformat(),
                }
            )
            if row.queue not in first_due:
                first_due[row.queue] = due
            else:
                known = first_due[row.queue]
                first_due[row.queue] = None if due is None or known is None else min(known, due)
        channels = [notify_channel(queue) for queue in first_due]
        payloads = [notify_payload(due) for due in first_due.values()]
        self._run(self._statement(INSERT_SQL), [json.dumps(documented), channels, payloads])

    def notify(self, queue: str) -> None:
        self._run("SELECT pg_notify(%s, '')", [notify_channel(queue)])

    def claim(
        self,
        queue: str,
        *,
        limit: int,
        now: datetime,
        until: datetime,
        window_s: float | None = None,
    ) -> list[Claim]:
        """Lease up to ``limit`` unleased due messages, skipping rows others have locked.

        Each row's lease is one token followed by its id. Returned in delivery order: highest
        priority first, then longest due, then oldest. With ``window_s``, only messages due
        within that many seconds are looked at, so the dead versions of the messages before
        them are never read.
        """
        token = uuid.uuid4().hex + "."
        window = WHOLE_QUEUE_S if window_s is None else window_s
        params = [token, until, PRIORITIES_HIGH_FIRST, queue, window, limit, limit]
        rows = self._run(self._statement(CLAIM_SQL), params)
        rows.sort(key=lambda row: (-row[3], row[4], row[0]))
        return [Claim(token + str(row[0]), row[0], row[1], row[2]) for row in rows]

    def release_expired(self, queue: str, *, now: datetime) -> int:
        """Make messages whose lease ran out (their worker died) claimable again, and NOTIFY."""
        rows = self._run(self._statement(RELEASE_SQL), [queue, notify_channel(queue)])
        return int(rows[0][0]) if rows else 0

    def delete_settled(self, *, message_ids: Sequence[int], leases: Sequence[str]) -> int:
        with connections[self.alias].cursor() as cursor:
            cursor.execute(self._statement(DELETE_SQL), [list(message_ids), list(leases)])
            return int(cursor.rowcount)

    def next_due(self, queues: Sequence[str], *, now: datetime) -> datetime | None:
        """When the next countdown message of ``queues`` turns visible, if any.

        Leased messages do not count: a lease that runs out is found by the next poll (see
        ``release_expired``).
        """
        rows = self._run(self._statement(NEXT_DUE_SQL), [list(queues), now])
        due: datetime | None = rows[0][0] if rows else None
        return due
