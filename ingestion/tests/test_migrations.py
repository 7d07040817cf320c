"""Data migrations of the ingestion module, run forwards on a ledger in their starting state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connections
from django.db.migrations.executor import MigrationExecutor

from ingestion.models import IngestedFile

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")

BEFORE = ("ingestion", "0003_source_bounds")


def latest() -> tuple[str, str]:
    """The module's newest migration, where every test leaves the database."""
    (leaf,) = MigrationExecutor(connections["ingestion"]).loader.graph.leaf_nodes("ingestion")
    return leaf


def migrate(target: tuple[str, str]) -> MigrationExecutor:
    executor = MigrationExecutor(connections["ingestion"])
    executor.migrate([target])
    return MigrationExecutor(connections["ingestion"])


def test_identical_files_imported_twice_become_duplicates_of_the_oldest() -> None:
    executor = migrate(BEFORE)
    try:
        old = executor.loader.project_state(BEFORE).apps.get_model("ingestion", "IngestedFile")
        start = datetime(2026, 1, 1, tzinfo=UTC)

        def row(name: str, sha: str, status: str, minutes: int) -> int:
            made = old.objects.create(origin="upload", name=name, sha256=sha, status=status, message="m")
            # discovered_at is set on creation; the order of the race is what is kept.
            old.objects.filter(pk=made.pk).update(discovered_at=start + timedelta(minutes=minutes))
            return int(made.pk)

        later = row("b.slg_v2", "a" * 64, "imported", 5)
        oldest = row("a.slg_v2", "a" * 64, "imported", 1)
        third = row("c.slg_v2", "a" * 64, "imported", 9)
        rejected = row("d.slg_v2", "a" * 64, "rejected", 0)
        alone = row("e.slg_v2", "b" * 64, "imported", 2)
        no_hash = [row("f.slg_v2", "", "imported", 3), row("g.slg_v2", "", "imported", 4)]
    finally:
        migrate(latest())
    status = dict(IngestedFile.objects.values_list("pk", "status"))
    assert status[oldest] == "imported" and status[alone] == "imported"
    assert status[later] == status[third] == "duplicate" and status[rejected] == "rejected"
    assert all(status[pk] == "imported" for pk in no_hash)
    for pk in (later, third):
        marked = IngestedFile.objects.get(pk=pk)
        assert marked.duplicate_of_id == oldest and "migration 0004" in marked.message
