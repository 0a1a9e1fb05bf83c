"""The READY rows of published calls: inserted as they are published, one statement per batch.

A READY row is written before its message is published, so a worker never runs a call whose
row cannot be found. Its loss in a database crash is harmless: the worker's first write of the
run (``result_store``) inserts the row from the message when it finds none. So the insert's
commit does not wait for the disk, like ``commit.relaxed_commit``, and on PostgreSQL that costs
no extra round trip: the ``INSERT`` itself turns ``synchronous_commit`` off for its own
transaction. Inside a transaction the caller opened, the rows take the caller's durability.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from django.db import connections, router
from django.db.models import Field
from django.db.models.constants import OnConflict
from django.db.models.sql import InsertQuery

from djworker.busy import retry_when_busy
from djworker.commit import relaxed_commit
from djworker.models.results import TaskResult, TaskStatus

# Evaluated per inserted row while the statement runs, so before its autocommit.
RELAX_OWN_COMMIT = " RETURNING set_config('synchronous_commit', 'off', true)"
#: the columns that differ between the calls of one ``insert_calls``
CALL_COLUMNS = ("id", "args", "kwargs")

#: (alias, vendor) -> the statement inserting one row
_single_row_sql: dict[tuple[str, str], str] = {}


def insert(rows: Sequence[TaskResult]) -> None:
    """Insert ``rows`` in one transaction (one statement on PostgreSQL); an existing id is kept.

    Retried while SQLite is busy. Raises what the database raises; then no row was inserted.
    """
    if not rows:
        return
    alias = router.db_for_write(TaskResult)
    if _relaxes_own_commit(alias):
        _insert_relaxed(alias, rows)
        return
    _insert_in_transaction(alias, rows)


def insert_calls(
    template: TaskResult, calls: Sequence[tuple[str, list[Any], dict[str, Any]]]
) -> None:
    """Insert one row per ``(id, args, kwargs)`` in ``calls``, every other field ``template``'s.

    One statement on PostgreSQL whatever the number of calls, whose parameters are the three
    varying columns as arrays and each other column once; elsewhere ``insert``.
    """
    if not calls:
        return
    alias = router.db_for_write(TaskResult)
    if not _relaxes_own_commit(alias):
        rows = []
        for task_id, args, kwargs in calls:
            row = TaskResult(**{f.attname: getattr(template, f.attname) for f in _fields()})
            row.id, row.args, row.kwargs = task_id, args, kwargs
            rows.append(row)
        _insert_in_transaction(alias, rows)
        return
    connection = connections[alias]
    columns, selected, shared = [], [], []
    for field in _fields():
        columns.append(connection.ops.quote_name(str(field.column)))
        if field.attname in CALL_COLUMNS:
            selected.append(f"call.{field.attname}")
        else:
            selected.append(f"%s::{_cast(field, connection)}")
            shared.append(field.get_db_prep_save(field.pre_save(template, True), connection))
    by_column = {name: field for field in _fields() if (name := field.attname) in CALL_COLUMNS}
    arrays = [
        [by_column[name].get_db_prep_save(call[index], connection) for call in calls]
        for index, name in enumerate(CALL_COLUMNS)
    ]
    unnest = ", ".join(f"%s::{_cast(by_column[name], connection)}[]" for name in CALL_COLUMNS)
    sql = (
        f"INSERT INTO {connection.ops.quote_name(TaskResult._meta.db_table)} "
        f"({', '.join(columns)}) SELECT {', '.join(selected)} "
        f"FROM UNNEST({unnest}) AS call({', '.join(CALL_COLUMNS)}) "
        f"ON CONFLICT DO NOTHING{RELAX_OWN_COMMIT}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*shared, *arrays])


def delete(ids: Sequence[str]) -> None:
    """Delete the READY rows of calls whose messages could not be published."""
    if ids:
        retry_when_busy(
            TaskResult.objects.filter(id__in=list(ids), status=TaskStatus.READY).delete,
            alias=router.db_for_write(TaskResult),
            what=f"results={len(ids)} forget",
        )


def _relaxes_own_commit(alias: str) -> bool:
    """Whether a statement is its own transaction on PostgreSQL (not inside the caller's)."""
    connection = connections[alias]
    return (
        connection.vendor == "postgresql"
        and not connection.in_atomic_block
        and connection.get_autocommit()
    )


def _insert_in_transaction(alias: str, rows: Sequence[TaskResult]) -> None:
    def insert_rows() -> None:
        with relaxed_commit(alias):
            TaskResult.objects.using(alias).bulk_create(rows, ignore_conflicts=True)

    what = f"result id={rows[0].id} enqueued" if len(rows) == 1 else f"results={len(rows)} enqueued"
    retry_when_busy(insert_rows, alias=alias, what=what)


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


def _fields() -> list[Field[Any, Any]]:
    return [field for field in TaskResult._meta.concrete_fields if not field.generated]


def _cast(field: Field[Any, Any], connection: Any) -> str:
    # Without a length: an explicit cast to varchar(n) would cut a longer value silently,
    # where the column refuses it.
    return re.sub(r"\(\d+\)$", "", str(field.cast_db_type(connection)))


def _compiled(
    alias: str, fields: list[Field[Any, Any]], rows: Sequence[TaskResult]
) -> tuple[str, Any]:
    query = InsertQuery(TaskResult, on_conflict=OnConflict.IGNORE)
    query.insert_values(fields, list(rows))
    [(sql, params)] = query.get_compiler(using=alias).as_sql()
    return sql, params
