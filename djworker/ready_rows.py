"""The READY rows of published calls: inserted as they are published, one statement per batch.

A READY row is written before its message is published, so a worker never runs a call whose
row cannot be found. Its loss in a database crash is harmless: the worker's first write of the
run (``result_store``) inserts the row from the message when it finds none. So the insert's
commit does not wait for the disk, like ``commit.relaxed_commit``, and on PostgreSQL that costs
no extra round trip: the ``INSERT`` itself turns ``synchronous_commit`` off for its own
transaction. Inside a transaction the caller opened, the rows take the caller's durability.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from django.db import connections, router
from django.db.models import Field

from djworker.busy import retry_when_busy
from djworker.commit import relaxed_commit
from djworker.models.results import TaskResult, TaskStatus

# Evaluated per inserted row while the statement runs, so before its autocommit.
RELAX_OWN_COMMIT = " RETURNING set_config('synchronous_commit', 'off', true)"
#: the columns that differ between the calls of one ``insert_calls``
CALL_COLUMNS = ("id", "args", "kwargs")

#: (alias, vendor, the fields a call sets) -> the statement inserting one fresh row
_fresh_row_sql: dict[tuple[str, str, tuple[str, ...]], tuple[str, list[Field[Any, Any]]]] = {}
#: defaults that are the same for every row, so a statement may hold them as literals
CONSTANT_DEFAULTS = (list, dict)


def insert_fresh(values: dict[str, Any]) -> None:
    """Insert the READY row of one call: ``values`` by field name, every other field its default.

    For ``.delay()``; retried while SQLite is busy, and raises what the database raises (then
    no row was inserted); an existing id is kept. On PostgreSQL outside a transaction the
    statement is built once per set of field names, with the other fields' defaults written
    into it, so a call prepares and sends only its own values.
    """
    alias = router.db_for_write(TaskResult)
    if not _relaxes_own_commit(alias):
        _insert_in_transaction(alias, [TaskResult(**values)])
        return
    connection = connections[alias]
    key = (alias, connection.vendor, tuple(values))
    built = _fresh_row_sql.get(key)
    if built is None:
        built = _fresh_row_sql[key] = _fresh_row_statement(alias, set(values))
    sql, given = built
    params = [
        field.get_db_prep_save(
            values[field.attname] if field.attname in values else field.get_default(), connection
        )
        for field in given
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _fresh_row_statement(alias: str, names: set[str]) -> tuple[str, list[Field[Any, Any]]]:
    """The ``INSERT`` of one fresh row whose ``names`` are given; the fields it takes values for.

    A field not in ``names`` whose default is a constant is written into the statement as a
    literal; one whose default is computed (e.g. a time) stays a parameter.
    """
    connection = connections[alias]
    ops: Any = connection.ops  # PostgreSQL's, the only vendor this statement is built for
    template = TaskResult()
    given: list[Field[Any, Any]] = []
    values: list[str] = []
    for field in _fields():
        default = field.default if field.has_default() else None
        if field.attname in names or (callable(default) and default not in CONSTANT_DEFAULTS):
            given.append(field)
            values.append("%s")
            continue
        literal = ops.compose_sql(
            "%s", [field.get_db_prep_save(field.pre_save(template, True), connection)]
        )
        values.append(literal.replace("%", "%%"))
    sql = f"{_insert_into(connection)} VALUES ({', '.join(values)}) ON CONFLICT DO NOTHING"
    return sql + RELAX_OWN_COMMIT, given


def insert_calls(
    template: TaskResult, calls: Sequence[tuple[str, list[Any], dict[str, Any]]]
) -> None:
    """Insert one row per ``(id, args, kwargs)`` in ``calls``, every other field ``template``'s.

    One statement on PostgreSQL whatever the number of calls, whose parameters are each shared
    column once and the calls as one JSON document; elsewhere a transaction.
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
    selected, shared = [], []
    for field in _fields():
        if field.attname in CALL_COLUMNS:
            selected.append(f"call.{field.attname}")
        else:
            selected.append(f"%s::{_cast(field, connection)}")
            shared.append(field.get_db_prep_save(field.pre_save(template, True), connection))
    by_column = {name: field for field in _fields() if (name := field.attname) in CALL_COLUMNS}
    record = ", ".join(f"{name} {_cast(by_column[name], connection)}" for name in CALL_COLUMNS)
    # The calls as one JSON document (the result table's JSON fields have no custom encoder):
    # one parameter whatever their number, where an array per column made the driver escape
    # every value twice, which cost more than the insert.
    calls_document = json.dumps([dict(zip(CALL_COLUMNS, call, strict=True)) for call in calls])
    sql = (
        f"{_insert_into(connection)} SELECT {', '.join(selected)} "
        f"FROM json_to_recordset(%s::json) AS call({record}) "
        f"ON CONFLICT DO NOTHING{RELAX_OWN_COMMIT}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*shared, calls_document])


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


def _insert_into(connection: Any) -> str:
    """``INSERT INTO`` the result table, naming every column ``_fields`` holds, in order."""
    columns = ", ".join(connection.ops.quote_name(str(field.column)) for field in _fields())
    return f"INSERT INTO {connection.ops.quote_name(TaskResult._meta.db_table)} ({columns})"


def _fields() -> list[Field[Any, Any]]:
    return [field for field in TaskResult._meta.concrete_fields if not field.generated]


def _cast(field: Field[Any, Any], connection: Any) -> str:
    # Without a length: an explicit cast to varchar(n) would cut a longer value silently,
    # where the column refuses it.
    return re.sub(r"\(\d+\)$", "", str(field.cast_db_type(connection)))
