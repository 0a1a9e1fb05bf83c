"""The two ``UPDATE`` statements a worker sends for every task run, built once, not per task.

The RUNNING mark (which also counts the run and checks for a revocation) and the final write
are the same statement for every task but their values. Building them through the ORM (a
queryset, its WHERE tree, an ``UpdateQuery`` compiled each time) cost a worker more CPU than
the rest of a no-op task's run together; here the SQL text for a set of columns is built once
per database connection's vendor and kept. Values still go through each field's
``get_db_prep_save``, as the ORM sends them, and ``None`` is SQL ``NULL`` as in ``update()``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import CharField, Field, FloatField, IntegerField, TextField

from djworker.models.results import TaskResult

#: joined into an UPDATE on PostgreSQL: the statement's own (implicit) transaction then commits
#: without waiting for the WAL flush. Evaluated once, as an uncorrelated subquery; ``set_config``
#: with ``is_local`` lasts until that transaction ends, so the session's setting is untouched.
RELAXED_FROM = " FROM (SELECT set_config('synchronous_commit', 'off', true)) AS relaxed_commit"
#: the vendors whose ``UPDATE`` can return the new run count in the same statement
RETURNING_VENDORS = ("postgresql", "sqlite")
#: the spelling of a two-argument maximum, by vendor
GREATEST = {"sqlite": "MAX"}


@dataclass(frozen=True)
class _Statement:
    sql: str
    #: each SET column's value preparation, in the order of the SQL's placeholders
    prepare: tuple[Callable[[Any, BaseDatabaseWrapper], Any], ...]

    def params(self, values: tuple[Any, ...], connection: BaseDatabaseWrapper) -> list[Any]:
        return [prep(value, connection) for prep, value in zip(self.prepare, values, strict=True)]


#: statements by (vendor, columns, counting, floor, relaxed); the SQL differs only by vendor
_statements: dict[tuple[str, tuple[str, ...], bool, bool, bool], _Statement] = {}


def _statement(
    connection: BaseDatabaseWrapper,
    names: tuple[str, ...],
    *,
    counting: bool = False,
    floor: bool = False,
    relaxed: bool = False,
) -> _Statement:
    """``UPDATE`` of the columns ``names`` of one row, by id; built once per vendor.

    ``counting`` also adds one to ``attempts`` and ``deliveries``, refuses a revoked row and
    (where the vendor can) returns the new ``deliveries``; ``floor`` takes one more parameter,
    the lowest count the run may have; ``relaxed`` commits without waiting for the disk.
    """
    key = (connection.vendor, names, counting, floor, relaxed)
    statement = _statements.get(key)
    if statement is None:
        statement = _statements[key] = _build(connection, names, counting, floor, relaxed)
    return statement


def _build(
    connection: BaseDatabaseWrapper,
    names: tuple[str, ...],
    counting: bool,
    floor: bool,
    relaxed: bool,
) -> _Statement:
    quote, vendor = connection.ops.quote_name, connection.vendor
    meta = TaskResult._meta
    table = quote(meta.db_table)
    fields = [_field(name) for name in names]
    assignments = [f"{quote(_column(name))} = %s" for name in names]
    where = f"{quote(_column('id'))} = %s"
    tail = ""
    if counting:
        attempts, deliveries = quote("attempts"), quote("deliveries")
        assignments.append(f"{attempts} = {table}.{attempts} + 1")
        counted = f"{table}.{deliveries} + 1"
        if floor:
            counted = f"{GREATEST.get(vendor, 'GREATEST')}({counted}, %s)"
        assignments.append(f"{deliveries} = {counted}")
        where += f" AND {table}.{quote('revoked_at')} IS NULL"
        if vendor in RETURNING_VENDORS:
            tail = f" RETURNING {table}.{deliveries}"
    joined = RELAXED_FROM if relaxed and vendor == "postgresql" else ""
    sql = f"UPDATE {table} SET {', '.join(assignments)}{joined} WHERE {where}{tail}"
    return _Statement(sql, tuple(_preparation(field) for field in fields))


def _field(name: str) -> Field[Any, Any]:
    field = TaskResult._meta.get_field(name)
    assert isinstance(field, Field) and field.column  # the table's own columns only
    return field


def _column(name: str) -> str:
    column = _field(name).column
    assert column is not None
    return column


#: fields whose values the ORM sends unchanged (their ``get_prep_value`` only converts the type)
_SENT_AS_IS = (CharField, TextField, FloatField, IntegerField)


def _preparation(field: Field[Any, Any]) -> Callable[[Any, BaseDatabaseWrapper], Any]:
    if isinstance(field, _SENT_AS_IS):
        return _as_is

    def prepare(value: Any, connection: BaseDatabaseWrapper) -> Any:
        return None if value is None else field.get_db_prep_save(value, connection=connection)

    return prepare


def _as_is(value: Any, connection: BaseDatabaseWrapper) -> Any:
    return value


def update(alias: str, task_id: str, fields: Mapping[str, Any]) -> int:
    """Set ``fields`` on the row ``task_id``; how many rows it changed (0 or 1)."""
    connection = connections[alias]
    names = tuple(fields)
    statement = _statement(connection, names)
    params = statement.params(tuple(fields.values()), connection)
    with connection.cursor() as cursor:
        cursor.execute(statement.sql, [*params, task_id])
        return int(cursor.rowcount)


def update_counting(
    alias: str, task_id: str, fields: Mapping[str, Any], *, at_least: int, relaxed: bool
) -> int | None:
    """Set ``fields`` and count one more run, unless revoked; the new ``deliveries``, or None.

    None if there is no such row, or it was revoked. ``relaxed``: the write may commit without
    waiting for the disk (see ``djworker.commit``); applied only outside a transaction, where
    the statement is its own transaction, so a caller's transaction keeps its durability.
    """
    connection = connections[alias]
    floor = at_least > 1
    statement = _statement(
        connection,
        tuple(fields),
        counting=True,
        floor=floor,
        relaxed=relaxed and not connection.in_atomic_block,
    )
    params = statement.params(tuple(fields.values()), connection)
    if floor:
        params.append(at_least)
    with connection.cursor() as cursor:
        cursor.execute(statement.sql, [*params, task_id])
        if connection.vendor in RETURNING_VENDORS:
            row = cursor.fetchone()
            return None if row is None else int(row[0])
        if not cursor.rowcount:
            return None
        quote = connection.ops.quote_name
        cursor.execute(
            f"SELECT {quote('deliveries')} FROM {quote(TaskResult._meta.db_table)} "
            f"WHERE {quote(_column('id'))} = %s",
            [task_id],
        )
        found = cursor.fetchone()
        return None if found is None else int(found[0])
