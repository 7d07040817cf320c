"""Dirty marks name their sensors in an array: one mark per stored batch and (metric, hour)
instead of one per sensor. Pending marks are carried over, one sensor each."""

from typing import Any

from django.db import migrations, models


def carry_over(apps: Any, schema_editor: Any) -> None:
    marks = apps.get_model("sensors", "DirtyBucket")
    db = schema_editor.connection.alias
    for mark in marks.objects.using(db).all().iterator():
        mark.sensor_ids = [mark.sensor_id]
        mark.save(update_fields=["sensor_ids"])


class Migration(migrations.Migration):
    dependencies = [("sensors", "0005_reading_timestamp_index_brin")]

    operations = [
        migrations.AddField(
            model_name="dirtybucket",
            name="sensor_ids",
            field=models.JSONField(
                default=list, help_text="Primary keys of the sensors with new readings in the hour."
            ),
            preserve_default=False,
        ),
        migrations.RunPython(carry_over, migrations.RunPython.noop),
        migrations.RemoveField(model_name="dirtybucket", name="sensor"),
    ]
