"""A row no job can compute with (an old row, a manual edit) is skipped and reported: the
periodic jobs go on with every other row."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connections
from django.utils import timezone

from energy_dashboard.testing import AFTER_FIXED_DATES
from sensors import services, tasks
from sensors.models import MAX_EXPECTED_INTERVAL_S, DirtyBucket, Reading, Rollup, Sensor

pytestmark = pytest.mark.django_db(databases="__all__")

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)


def largest_interval() -> int:
    """The largest expected_interval_s the database can hold (what a manual edit could write)."""
    return 2**63 - 1 if connections["sensors"].vendor == "sqlite" else 2**31 - 1


def put(sensor: str, metric: str, at: datetime, value: float) -> None:
    result = services.readings_ingest(
        readings=[{"sensor_id": sensor, "metric": metric, "timestamp": at.isoformat(), "value": value}]
    )
    assert result["accepted"] == 1, result


@pytest.fixture
def lab() -> None:
    services.room_create(name="lab")
    services.sensor_register(sensor_id="p1", kind="power", room_name="lab")
    services.sensor_register(sensor_id="p2", kind="power", room_name="lab")
    services.sensor_register(sensor_id="e1", kind="energy_meter", room_name="lab")


@pytest.mark.usefixtures("lab")
def test_stale_job_skips_a_sensor_whose_interval_it_cannot_compute_with(caplog: Any) -> None:
    silent = timezone.now() - timedelta(hours=1)
    Sensor.objects.filter(sensor_id__in=["p1", "p2"]).update(last_seen=silent, expected_interval_s=60)
    Sensor.objects.filter(sensor_id="e1").update(last_seen=timezone.now())
    # Straight to the database, as an old row or a manual edit would be.
    Sensor.objects.filter(sensor_id="p1").update(expected_interval_s=largest_interval())
    with caplog.at_level(logging.WARNING, logger="sensors"):
        assert tasks.sensors_mark_stale() == {"stale": 1, "skipped": 1}
    assert Sensor.objects.get(sensor_id="p2").status == Sensor.Status.STALE
    assert Sensor.objects.get(sensor_id="p1").status == Sensor.Status.ACTIVE
    assert any("p1" in r.getMessage() and "expected_interval_s" in r.getMessage() for r in caplog.records)
    # And again on the next run: the bad row never stops the job.
    assert tasks.sensors_mark_stale() == {"stale": 0, "skipped": 1}


@pytest.mark.usefixtures("lab")
def test_a_stale_sensor_with_an_interval_out_of_bounds_still_takes_readings() -> None:
    Sensor.objects.filter(sensor_id="p1").update(
        status=Sensor.Status.STALE, expected_interval_s=largest_interval()
    )
    now = timezone.now().replace(microsecond=0)
    put("p1", "power", now - timedelta(seconds=5), 10)
    # Fresh data against the longest interval the registry allows: it recovers.
    assert Sensor.objects.get(sensor_id="p1").status == Sensor.Status.ACTIVE
    assert largest_interval() > MAX_EXPECTED_INTERVAL_S


@pytest.mark.clock(AFTER_FIXED_DATES)
@pytest.mark.usefixtures("lab")
def test_aggregation_skips_dirty_marks_it_cannot_compute_with(caplog: Any) -> None:
    put("e1", "energy", T0, 1.0)
    e1 = Sensor.objects.get(sensor_id="e1").pk
    bad = [
        DirtyBucket.objects.create(
            metric="energy", bucket=datetime(9999, 12, 31, 23, tzinfo=UTC), sensor_ids=str(e1)
        ),
        DirtyBucket.objects.create(metric="energy", bucket=T0, sensor_ids="x,"),
        DirtyBucket.objects.create(metric="energy", bucket=datetime(1, 1, 1, tzinfo=UTC), sensor_ids=str(e1)),
        DirtyBucket.objects.create(metric="voltage", bucket=T0, sensor_ids=str(e1)),
    ]
    with caplog.at_level(logging.WARNING, logger="sensors"):
        done = tasks.room_metrics_compute()
    assert done["skipped"] == 4 and done["days"] == 1
    assert Rollup.objects.filter(sensor_id=e1, resolution="1h").values_list("sum", flat=True).get() == 1.0
    # Reported by id, and gone: they would otherwise be read again by every run.
    for mark in bad:
        assert any(f"mark {mark.pk}" in r.getMessage() for r in caplog.records)
    assert not DirtyBucket.objects.exists()
    assert tasks.room_metrics_compute() == {"days": 0, "marks": 0, "rooms": 0, "skipped": 0}


@pytest.mark.clock(AFTER_FIXED_DATES)
@pytest.mark.usefixtures("lab")
def test_aggregation_skips_a_day_whose_stored_values_overflow(caplog: Any) -> None:
    # Two raw rows whose sum is past a double, written straight to the database (bypassing the
    # ingest's range check), on one day; a good reading on another day.
    p1 = Sensor.objects.get(sensor_id="p1").pk
    Reading.objects.bulk_create(
        [
            Reading(sensor_id=p1, metric="power", timestamp=T0, value=1.5e308),
            Reading(sensor_id=p1, metric="power", timestamp=T0 + timedelta(minutes=1), value=1.5e308),
        ]
    )
    DirtyBucket.objects.create(metric="power", bucket=T0, sensor_ids=str(p1))
    put("p2", "power", T0 + timedelta(days=1), 7.0)
    with caplog.at_level(logging.WARNING, logger="sensors"):
        done = tasks.room_metrics_compute()
    p2 = Sensor.objects.get(sensor_id="p2").pk
    assert Rollup.objects.filter(sensor_id=p2, resolution="1d").values_list("sum", flat=True).get() == 7.0
    if connections["sensors"].vendor == "postgresql":
        # PostgreSQL refuses the overflowing sum: that day is skipped, and said so.
        assert done["skipped"] >= 1
        assert any("2026-11-02" in r.getMessage() for r in caplog.records)
    assert not DirtyBucket.objects.exists()


@pytest.mark.usefixtures("lab")
def test_retention_longer_than_the_horizon_keeps_everything(settings: Any) -> None:
    settings.READINGS_RETENTION_DAYS = 10**9
    settings.ROLLUP_RETENTION_DAYS = 10**9
    put("p1", "power", timezone.now() - timedelta(days=400), 1)
    assert tasks.readings_cleanup() == {"readings": 0, "rollups": 0}
    assert Reading.objects.count() == 1


@pytest.mark.usefixtures("lab")
def test_retention_deletes_rows_stored_outside_the_horizon(settings: Any) -> None:
    settings.READINGS_RETENTION_DAYS = 30
    p1 = Sensor.objects.get(sensor_id="p1").pk
    Reading.objects.bulk_create(
        [Reading(sensor_id=p1, metric="power", timestamp=datetime(1, 1, 1, tzinfo=UTC), value=1)]
    )
    put("p1", "power", timezone.now() - timedelta(days=1), 2)
    assert tasks.readings_cleanup()["readings"] == 1
    assert list(Reading.objects.values_list("value", flat=True)) == [2.0]
