"""Migrations that rewrite stored data keep it, forwards and backwards, on both databases."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from django.db import IntegrityError, connections, transaction
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)

DB = "sensors"
BEFORE = ("sensors", "0006_marks_name_their_sensors")
AT = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)


def migrate(target: tuple[str, str] | None) -> None:
    executor = MigrationExecutor(connections[DB])
    targets = [target] if target else executor.loader.graph.leaf_nodes("sensors")
    executor.migrate(targets)


@pytest.fixture
def at_0006() -> Iterator[None]:
    migrate(BEFORE)
    try:
        yield
    finally:
        migrate(None)  # the rest of the suite runs on the latest schema


def rows(sql: str) -> list[tuple[object, ...]]:
    with connections[DB].cursor() as cursor:
        cursor.execute(sql)
        return list(cursor.fetchall())


def adapt(moment: datetime) -> Any:  # the backend's own form (text on SQLite)
    return connections[DB].ops.adapt_datetimefield_value(moment)


@pytest.mark.usefixtures("at_0006")
def test_the_point_key_and_text_marks_keep_the_data_both_ways() -> None:
    with connections[DB].cursor() as cursor:
        cursor.execute(
            "INSERT INTO sensors_reading (sensor_id, metric, timestamp, value, estimated) "
            "VALUES (%s, %s, %s, %s, %s), (%s, %s, %s, %s, %s)",
            [7, "power", adapt(AT), 1.5, False, 7, "energy", adapt(AT), 0.25, True],
        )
        cursor.execute(
            "INSERT INTO sensors_dirtybucket (metric, bucket, sensor_ids) VALUES (%s, %s, %s)",
            ["power", adapt(AT), "[1, 22, 3]"],
        )

    migrate(None)
    from sensors.models import DirtyBucket, Reading

    assert sorted(Reading.objects.values_list("pk", "value", "estimated")) == [
        ((7, "energy", AT), 0.25, True),
        ((7, "power", AT), 1.5, False),
    ]
    assert [mark.pks for mark in DirtyBucket.objects.all()] == [[1, 22, 3]]
    # The primary key keeps a point unique, as the constraint it replaced did.
    with pytest.raises(IntegrityError), transaction.atomic(using=DB):
        Reading.objects.create(sensor_id=7, metric="power", timestamp=AT, value=2.0)

    migrate(BEFORE)
    assert sorted(rows("SELECT metric, value, estimated FROM sensors_reading")) == [
        ("energy", 0.25, True),
        ("power", 1.5, False),
    ]
    assert len({row[0] for row in rows("SELECT id FROM sensors_reading")}) == 2  # ids again
    assert [str(row[0]).replace(" ", "") for row in rows("SELECT sensor_ids FROM sensors_dirtybucket")] == [
        "[1,22,3]"
    ]
