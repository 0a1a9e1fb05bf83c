"""The READY rows of published calls: inserted as they are published, one statement per batch.

A READY row is written before its message is published, so a worker never runs a call whose
row cannot be found. Its loss in a database crash is harmless: the worker's first write of the
run (``result_store``) inserts the row from the message when it finds none. So the insert's
commit does not wait for the disk, like ``commit.relaxed_commit``, and on PostgreSQL that costs
no extra round trip: the ``INSERT`` itself turns ``synchronous_commit`` off for its own
transaction. Inside a transaction the caller opened, the rows take the caller's durability.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import connections, router
from django.db.models import Field
from django.db.models.constants import OnConflict
from django.db.models.sql import InsertQuery

from djworker.busy import retry_when_busy
from djworker.commit import relaxed_commit
from djworker.models.results import TaskResult

# Evaluated per inserted row while the statement runs, so before its autocommit.
RELAX_OWN_COMMIT = " RETURNING set_config('synchronous_commit', 'off', true)"


def insert(rows: Sequence[TaskResult]) -> None:
    """Insert ``rows`` in one transaction (one statement on PostgreSQL); an existing id is kept.

    Retried while SQLite is busy. Raises what the database raises; then no row was inserted.
    """
    if not rows:
        return
    alias = router.db_for_write(TaskResult)
    connection = connections[alias]
    if (
        connection.vendor == "postgresql"
        and not connection.in_atomic_block
        and connection.get_autocommit()
    ):
        _insert_relaxed(alias, rows)
        return

    def insert_in_transaction() -> None:
        with relaxed_commit(alias):
            TaskResult.objects.using(alias).bulk_create(rows, ignore_conflicts=True)

    what = f"result id={rows[0].id} enqueued" if len(rows) == 1 else f"results={len(rows)} enqueued"
    retry_when_busy(insert_in_transaction, alias=alias, what=what)


def _insert_relaxed(alias: str, rows: Sequence[TaskResult]) -> None:
    connection = connections[alias]
    fields = _fields()
    if len(rows) == 1:
        # One call, one row: the statement is always the same, only its values change.
        key = (alias, connection.vendor)
        sql = _single_row_sql.get(key)
        if sql is None:
            sql = _single_row_sql[key] = _compiled(alias, fields, rows)[0] + RELAX_OWN_COMMIT
        params = [
            field.get_db_prep_save(field.pre_save(rows[0], True), connection) for field in fields
        ]
    else:
        sql, params = _compiled(alias, fields, rows)
        sql += RELAX_OWN_COMMIT
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


_single_row_sql: dict[tuple[str, str], str] = {}


def _fields() -> list[Field[Any, Any]]:
    return [field for field in TaskResult._meta.concrete_fields if not field.generated]


def _compiled(
    alias: str, fields: list[Field[Any, Any]], rows: Sequence[TaskResult]
) -> tuple[str, Any]:
    query = InsertQuery(TaskResult, on_conflict=OnConflict.IGNORE)
    query.insert_values(fields, list(rows))
    [(sql, params)] = query.get_compiler(using=alias).as_sql()
    return sql, params
