"""PostgreSQL only: the queue table's partial indexes and its own autovacuum settings.

Every claim and ack of the ``django://`` transport leaves a dead row version until VACUUM
removes it. The partial indexes hold only unleased rows (``lease = ''``) or only leased ones,
so the transport's frequent statements read ranges no dead version lies in (see
``djworker/transport/postgres.py``). The storage parameters make autovacuum, where it is on,
visit the table after every thousand dead rows rather than after a fifth of the table, and
without the cost delay. SQLite keeps no dead rows and gets neither.
"""

from django.db import migrations

TABLE = "djworker_queuemessage"
INDEXES = {
    "djworker_qmsg_ready_idx": "(queue, priority DESC, visible_at, id) WHERE lease = ''",
    "djworker_qmsg_due_idx": "(queue, visible_at) WHERE lease = ''",
    "djworker_qmsg_leased_idx": "(queue, visible_at) WHERE lease <> ''",
}
AUTOVACUUM = {
    "autovacuum_vacuum_scale_factor": "0",
    "autovacuum_vacuum_threshold": "1000",
    "autovacuum_vacuum_insert_scale_factor": "0",
    "autovacuum_vacuum_insert_threshold": "1000",
    "autovacuum_analyze_scale_factor": "0",
    "autovacuum_analyze_threshold": "5000",
    "autovacuum_vacuum_cost_delay": "0",
}


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, definition in INDEXES.items():
        schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {TABLE} {definition}")
    settings = ", ".join(f"{key} = {value}" for key, value in AUTOVACUUM.items())
    schema_editor.execute(f"ALTER TABLE {TABLE} SET ({settings})")


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")
    schema_editor.execute(f"ALTER TABLE {TABLE} RESET ({', '.join(AUTOVACUUM)})")


class Migration(migrations.Migration):
    dependencies = [
        ("djworker", "0013_profile_pool_help_text"),
    ]

    operations = [migrations.RunPython(create, drop)]
