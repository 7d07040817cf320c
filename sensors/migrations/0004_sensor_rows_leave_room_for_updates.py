"""Sensor rows leave half of each page free (PostgreSQL), so that the ingest's last_seen update
is a heap-only (HOT) update.

Every stored batch moves last_seen forward for each of its sensors: 1,000 rows per batch in
bench/ingest_api.py. With full pages most of those updates found no room beside the old row
and wrote a new version into every one of the table's eight indexes (25 ms per batch, a
quarter of a 5,000-reading request). last_seen is in no index, so an update that finds room
on its page touches no index at all. The table holds one row per sensor: the doubled size is
a few pages. SQLite has no such setting.
"""

from typing import Any

from django.db import migrations

TABLE = "sensors_sensor"


def leave_room(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"ALTER TABLE {TABLE} SET (fillfactor = 50)")


def fill_pages(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"ALTER TABLE {TABLE} RESET (fillfactor)")


class Migration(migrations.Migration):
    dependencies = [("sensors", "0003_readings_without_database_foreign_key")]

    operations = [migrations.RunPython(leave_room, fill_pages)]
