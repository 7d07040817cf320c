"""Before the constraint that allows one imported file per content (0005): a ledger may already
hold identical files that two workers imported at the same moment. The oldest of each such
group stays imported; the others become duplicates of it (their readings were stored once:
inserts never double)."""

from typing import Any

from django.db import migrations
from django.db.models import Count


def mark_duplicates(apps: Any, schema_editor: Any) -> None:
    IngestedFile = apps.get_model("ingestion", "IngestedFile")
    db = schema_editor.connection.alias
    files = IngestedFile.objects.using(db)
    doubled = (
        files.filter(status="imported")
        .exclude(sha256="")
        .values("sha256")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .values_list("sha256", flat=True)
    )
    for sha256 in list(doubled):
        keep, *others = files.filter(status="imported", sha256=sha256).order_by("discovered_at", "id")
        for row in others:
            row.status = "duplicate"
            row.duplicate_of_id = keep.pk
            row.message = (
                f"same content as file {keep.pk} ({keep.name}), imported at the same moment; marked a "
                f"duplicate of it by migration 0004 (the readings are stored once). Was: {row.message}"
            )
            row.save(update_fields=["status", "duplicate_of", "message"])


class Migration(migrations.Migration):
    dependencies = [
        ("ingestion", "0003_source_bounds"),
    ]

    operations = [
        # Not reversed: the pairs were a defect, and the constraint's removal needs no data back.
        migrations.RunPython(mark_duplicates, migrations.RunPython.noop),
    ]
