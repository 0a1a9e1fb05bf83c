"""A proxy under the worker profile's former name, so its old admin URLs redirect.

No table and no permissions: ``djworker.models.former_names.WorkerConfig`` only gives the admin
a ``workerconfig`` model whose pages redirect to ``workerprofile``'s. Its content type (made
after ``migrate``, as for any model) is removed when this migration is reversed, so that
reversing 0015 can give the profile's content type its old name back.
"""

from typing import Any

from django.db import migrations


def remove_proxy_content_type(apps: Any, schema_editor: Any) -> None:
    try:
        content_type = apps.get_model("contenttypes", "ContentType")
    except LookupError:  # django.contrib.contenttypes is not installed
        return
    content_type.objects.filter(app_label="djworker", model="workerconfig").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("djworker", "0015_worker_profile"),
    ]

    operations = [
        migrations.CreateModel(
            name="WorkerConfig",
            fields=[],
            options={
                "verbose_name": "worker profile (former admin URL)",
                "verbose_name_plural": "worker profiles (former admin URL)",
                "proxy": True,
                "default_permissions": (),
                "indexes": [],
                "constraints": [],
            },
            bases=("djworker.workerprofile",),
        ),
        migrations.RunPython(migrations.RunPython.noop, remove_proxy_content_type),
    ]
