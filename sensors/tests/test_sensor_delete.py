"""Deleting a sensor takes its readings with it, even while a batch of its readings is being
stored: the readings table has no database foreign key (ADR 0006), so the ingest's row lock
and sensor_delete's lock are what keep readings of a deleted sensor from staying behind."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connections, transaction
from django.utils import timezone

from sensors import rules, services, storage
from sensors.models import DirtyBucket, Reading, Rollup, Sensor


def batch(sensor_id: str, count: int, minutes_ago: int) -> list[dict[str, object]]:
    start = timezone.now() - timedelta(minutes=minutes_ago)
    return [
        {
            "sensor_id": sensor_id,
            "metric": "power",
            "timestamp": (start + timedelta(seconds=i)).isoformat(),
            "value": i,
        }
        for i in range(count)
    ]


@pytest.mark.django_db(databases="__all__")
def test_deleting_a_sensor_deletes_its_readings_marks_and_rollups() -> None:
    for sensor_id in ("gone", "kept"):
        services.sensor_register(sensor_id=sensor_id, kind="power")
        assert services.readings_ingest(readings=batch(sensor_id, 30, 90))["accepted"] == 30
    services.aggregates_compute()
    gone = Sensor.objects.get(sensor_id="gone")
    assert Rollup.objects.filter(sensor=gone).exists()

    services.sensor_delete(sensor=gone)

    assert not Reading.objects.filter(sensor_id=gone.pk).exists()
    assert not Rollup.objects.filter(sensor_id=gone.pk).exists()
    assert not DirtyBucket.objects.exists()  # the aggregation job consumed every mark
    kept = Sensor.objects.get(sensor_id="kept")
    assert Reading.objects.filter(sensor=kept).count() == 30
    # The sensor is unknown to the ingest from now on.
    result = services.readings_ingest(readings=batch("gone", 1, 5))
    assert result["accepted"] == 0
    assert result["rejected"] == [{"index": 0, "reason": "unknown sensor 'gone'"}]


@pytest.mark.django_db(transaction=True, databases="__all__")
@pytest.mark.skipif(
    "connections['sensors'].vendor != 'postgresql'",
    reason="row locks are PostgreSQL's; SQLite runs one writer at a time, so the race cannot happen",
)
def test_a_deletion_during_an_ingest_leaves_no_reading_of_the_deleted_sensor() -> None:
    services.sensor_register(sensor_id="racing", kind="power")
    pk = Sensor.objects.get(sensor_id="racing").pk
    # A newer reading first: the racing batch is late data, so the ingest does not move the
    # sensor's last_seen (whose UPDATE would lock the row anyway); only its FOR KEY SHARE does.
    assert services.readings_ingest(readings=batch("racing", 1, 1))["accepted"] == 1
    stored = threading.Event()
    release = threading.Event()
    outcome: dict[str, Any] = {}

    def ingest() -> None:
        try:
            with transaction.atomic(using="sensors"):
                outcome["ingest"] = services.readings_ingest(readings=batch("racing", 500, 30))
                stored.set()
                # Hold the transaction open (its readings uncommitted) while the deletion starts.
                release.wait(10)
        finally:
            connections.close_all()

    def delete() -> None:
        try:
            services.sensor_delete(sensor=Sensor.objects.get(pk=pk))
            outcome["deleted"] = True
        finally:
            connections.close_all()

    ingesting = threading.Thread(target=ingest)
    ingesting.start()
    assert stored.wait(10)
    deleting = threading.Thread(target=delete)
    deleting.start()
    deleting.join(1)
    # The deletion waits for the ingest's lock instead of deleting the readings it cannot see.
    assert deleting.is_alive()
    release.set()
    ingesting.join(10)
    deleting.join(10)

    assert outcome["ingest"]["accepted"] == 500
    assert outcome["deleted"] is True
    assert not Sensor.objects.filter(pk=pk).exists()
    assert Reading.objects.filter(sensor_id=pk).count() == 0
    # Marks may still name it; the next run finds no readings of it and writes nothing.
    services.aggregates_compute()
    assert not Rollup.objects.filter(sensor_id=pk).exists()


@pytest.mark.django_db(transaction=True, databases="__all__")
@pytest.mark.skipif(
    "connections['sensors'].vendor != 'postgresql'",
    reason="row locks are PostgreSQL's; SQLite runs one writer at a time, so the race cannot happen",
)
def test_a_deletion_that_commits_during_an_ingest_makes_the_batch_refuse_its_points(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    services.sensor_register(sensor_id="racing", kind="power")
    services.sensor_register(sensor_id="staying", kind="power")
    pk = Sensor.objects.get(sensor_id="racing").pk
    write = storage.write
    deletions: list[threading.Thread] = []

    def write_then_delete(points: list[rules.Point]) -> storage.Written:
        written = write(points)
        if not deletions:
            # The batch's readings are stored but not committed, and its sensors not locked
            # yet: a deletion now commits at once, without seeing them.
            def delete() -> None:
                try:
                    services.sensor_delete(sensor=Sensor.objects.get(pk=pk))
                finally:
                    connections.close_all()

            deletions.append(threading.Thread(target=delete))
            deletions[0].start()
            deletions[0].join(10)
            assert not deletions[0].is_alive(), "the deletion waited for the batch"
        return written

    monkeypatch.setattr(storage, "write", write_then_delete)
    result = services.readings_ingest(readings=batch("racing", 3, 5) + batch("staying", 2, 5))

    # The batch rolled back and ran again: the deleted sensor's points are refused.
    assert result["accepted"] == 2
    assert [r["reason"] for r in result["rejected"]] == ["unknown sensor 'racing'"] * 3
    assert not Sensor.objects.filter(pk=pk).exists()
    assert Reading.objects.filter(sensor_id=pk).count() == 0
    assert Reading.objects.filter(sensor__sensor_id="staying").count() == 2
