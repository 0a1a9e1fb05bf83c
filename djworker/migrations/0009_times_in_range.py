"""Repair times outside the range a message may carry, so every reader can load the rows again.

Before messages were checked for it, PostgreSQL stored such times as sent (year 1 at +14:00 is
a date BC in UTC, year 9999 at -14:00 is year 10000), and psycopg cannot read them back: the
admin's list of task results failed for everyone, and so did ``AsyncResult.status``. SQLite
never stored them (Django could not convert them to UTC).
"""

from django.db import migrations

EARLIEST = "0001-01-02T00:00:00+00:00"
LATEST = "9999-12-30T00:00:00+00:00"
# column -> what it becomes when out of range
TASK_RESULT = {
    "enqueued_at": "now()",
    "run_after": "NULL",
    "started_at": "NULL",
    "finished_at": "NULL",
}
QUEUE_MESSAGE = {"visible_at": "now()", "created_at": "now()"}


def repair(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for model, columns in (("TaskResult", TASK_RESULT), ("QueueMessage", QUEUE_MESSAGE)):
        table = schema_editor.quote_name(apps.get_model("djworker", model)._meta.db_table)
        for column, replacement in columns.items():
            name = schema_editor.quote_name(column)
            schema_editor.execute(
                # Table and column names come from the models, never from input.
                f"UPDATE {table} SET {name} = {replacement} WHERE {name} < %s OR {name} > %s",
                params=[EARLIEST, LATEST],
            )


class Migration(migrations.Migration):
    dependencies = [
        ("djworker", "0008_operations"),
    ]

    operations = [migrations.RunPython(repair, migrations.RunPython.noop, elidable=True)]
