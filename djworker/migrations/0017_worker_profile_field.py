"""A worker's row names its worker profile ``profile`` (was ``config``), and why the latest
revision is not applied ``profile_error`` (was ``config_error``): one name for the profile."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("djworker", "0016_former_profile_urls"),
    ]

    operations = [
        migrations.RenameField(model_name="worker", old_name="config", new_name="profile"),
        migrations.RenameField(
            model_name="worker", old_name="config_error", new_name="profile_error"
        ),
    ]
