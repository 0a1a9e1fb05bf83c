"""The worker profile's model is ``WorkerProfile`` (it was ``WorkerConfig``).

Django renames the table and the content type; the model permissions keep their codenames
unless renamed here, so a group allowed to change profiles keeps that right.
"""

from typing import Any

from django.db import migrations

OLD, NEW = "workerconfig", "workerprofile"
ACTIONS = ("add", "change", "delete", "view")


def _rename_permissions(apps: Any, old: str, new: str) -> None:
    try:
        permission = apps.get_model("auth", "Permission")
    except LookupError:  # django.contrib.auth is not installed: no permissions to rename
        return
    for action in ACTIONS:
        rows = permission.objects.filter(
            content_type__app_label="djworker", codename=f"{action}_{old}"
        )
        if permission.objects.filter(
            content_type__app_label="djworker", codename=f"{action}_{new}"
        ).exists():
            continue  # created already (by a post_migrate run in between): leave both
        rows.update(codename=f"{action}_{new}")


def forwards(apps: Any, schema_editor: Any) -> None:
    _rename_permissions(apps, OLD, NEW)


def backwards(apps: Any, schema_editor: Any) -> None:
    _rename_permissions(apps, NEW, OLD)


class Migration(migrations.Migration):
    dependencies = [
        ("djworker", "0014_queue_partial_indexes"),
    ]

    operations = [
        migrations.RenameModel(
            old_name="WorkerConfig",
            new_name="WorkerProfile",
        ),
        migrations.AlterModelOptions(
            name="workerprofile",
            options={
                "ordering": ("name",),
                "permissions": [
                    ("choose_custom_pool", "Can choose a custom pool class in a profile")
                ],
                "verbose_name": "worker profile",
                "verbose_name_plural": "worker profiles",
            },
        ),
        migrations.RunPython(forwards, backwards),
    ]
