"""Rollups and room metrics: incremental, idempotent, correct for late data and DST days."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from sensors import services
from sensors.aggregation import local_day_bounds
from sensors.models import DirtyBucket, Reading, Rollup, RoomMetrics, Sensor

pytestmark = pytest.mark.django_db(databases="__all__")

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)  # Lisbon is UTC+0 in November


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@pytest.fixture
def lab() -> None:
    services.room_create(name="lab")
    for sensor_id, kind in [("p1", "power"), ("p2", "power"), ("e1", "energy_meter"), ("c1", "co2")]:
        services.sensor_register(sensor_id=sensor_id, kind=kind, room_name="lab")


def put(sensor: str, metric: str, minute: float, value: float, base: datetime = T0) -> None:
    result = services.readings_ingest(
        readings=[
            {
                "sensor_id": sensor,
                "metric": metric,
                "timestamp": iso(base + timedelta(minutes=minute)),
                "value": value,
            }
        ]
    )
    assert result["accepted"] == 1, result


def rollups(
    sensor: str, metric: str, resolution: str
) -> list[tuple[datetime, int, float, float, float, float]]:
    return list(
        Rollup.objects.filter(sensor__sensor_id=sensor, metric=metric, resolution=resolution)
        .order_by("bucket")
        .values_list("bucket", "count", "sum", "min", "max", "mean")
    )


@pytest.mark.usefixtures("lab")
def test_rollups_at_each_resolution() -> None:
    for minute, value in [(0, 100), (5, 200), (14, 300), (15, 400), (59, 500), (60, 600)]:
        put("p1", "power", minute, value)
    services.aggregates_compute()
    assert rollups("p1", "power", "15m") == [
        (T0, 3, 600.0, 100.0, 300.0, 200.0),
        (T0 + timedelta(minutes=15), 1, 400.0, 400.0, 400.0, 400.0),
        (T0 + timedelta(minutes=45), 1, 500.0, 500.0, 500.0, 500.0),
        (T0 + timedelta(minutes=60), 1, 600.0, 600.0, 600.0, 600.0),
    ]
    assert rollups("p1", "power", "1h") == [
        (T0, 5, 1500.0, 100.0, 500.0, 300.0),
        (T0 + timedelta(hours=1), 1, 600.0, 600.0, 600.0, 600.0),
    ]
    day_start, _ = local_day_bounds(T0.date())
    assert rollups("p1", "power", "1d") == [(day_start, 6, 2100.0, 100.0, 600.0, 350.0)]
    assert not DirtyBucket.objects.exists()


@pytest.mark.usefixtures("lab")
def test_recomputing_is_idempotent() -> None:
    put("p1", "power", 0, 100)
    services.aggregates_compute()
    before = rollups("p1", "power", "15m")
    services.rollups_backfill(since=T0 - timedelta(days=1), until=T0 + timedelta(days=1))
    services.aggregates_compute()
    assert rollups("p1", "power", "15m") == before
    assert Rollup.objects.filter(resolution="15m").count() == 1


@pytest.mark.usefixtures("lab")
def test_late_reading_updates_its_old_buckets() -> None:
    put("p1", "power", 0, 100)
    put("p1", "power", 300, 100)  # five hours later
    services.aggregates_compute()
    put("p1", "power", 1, 300)  # arrives late for 10:01
    services.aggregates_compute()
    assert rollups("p1", "power", "15m")[0] == (T0, 2, 400.0, 100.0, 300.0, 200.0)
    assert rollups("p1", "power", "1h")[0][1:] == (2, 400.0, 100.0, 300.0, 200.0)
    assert rollups("p1", "power", "1d")[0][1] == 3


@pytest.mark.usefixtures("lab")
def test_reading_arriving_during_a_run_keeps_its_mark() -> None:
    from sensors import aggregation

    put("p1", "power", 0, 100)
    real_recompute_day = aggregation._recompute_day

    def recompute_while_a_reading_arrives(*args: Any) -> None:
        real_recompute_day(*args)
        put("p1", "power", 1, 300)  # same 5-minute window, after the job read the marks

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(aggregation, "_recompute_day", recompute_while_a_reading_arrives)
        services.aggregates_compute()
    # The mark survived (its version moved), so the next run counts the late reading.
    assert DirtyBucket.objects.count() == 1
    assert rollups("p1", "power", "15m")[0][1] == 1
    services.aggregates_compute()
    assert rollups("p1", "power", "15m")[0][1:3] == (2, 400.0)
    assert not DirtyBucket.objects.exists()


@pytest.mark.usefixtures("lab")
def test_room_metrics_per_five_minutes() -> None:
    put("p1", "power", 0, 100)
    put("p1", "power", 2, 300)  # p1 mean 200 in the window
    put("p2", "power", 1, 50)  # p2 mean 50: room power 250
    put("e1", "energy", 4, 0.25)
    put("e1", "energy", 3, 0.5)
    put("c1", "co2", 1, 600)
    put("c1", "co2", 6, 800)  # next window
    services.aggregates_compute()
    first, second = RoomMetrics.objects.order_by("bucket")
    assert first.bucket == T0
    assert first.power_w == pytest.approx(250.0)
    assert first.energy_kwh == pytest.approx(0.75)
    assert first.co2_ppm == pytest.approx(600.0)
    assert first.sensors_reporting == 4
    assert first.temperature_c is None
    assert second.bucket == T0 + timedelta(minutes=5)
    assert (second.co2_ppm, second.sensors_reporting, second.power_w) == (800.0, 1, None)


def test_local_day_bounds_on_daylight_saving_days(settings: Any) -> None:
    settings.TIME_ZONE = "Europe/Lisbon"
    start, end = local_day_bounds(datetime(2026, 3, 29).date())  # clocks go forward
    assert (end - start) == timedelta(hours=23)
    start, end = local_day_bounds(datetime(2026, 10, 25).date())  # clocks go back
    assert (end - start) == timedelta(hours=25)
    assert start == datetime(2026, 10, 24, 23, 0, tzinfo=UTC)


@pytest.mark.usefixtures("lab")
def test_daily_rollup_of_a_25_hour_day() -> None:
    day_start = datetime(2026, 10, 24, 23, 0, tzinfo=UTC)  # local midnight, 25 October
    for hour in range(26):
        put("e1", "energy", hour * 60 + 15, 1.0, base=day_start)
    services.aggregates_compute()
    daily = rollups("e1", "energy", "1d")
    # The day has 25 hours; the 26th reading (00:15 on the 26th, local and UTC) is the next day's.
    assert [(b, c, s) for b, c, s, *_ in daily] == [
        (day_start, 25, 25.0),
        (day_start + timedelta(hours=25), 1, 1.0),
    ]


@pytest.mark.usefixtures("lab")
def test_retention_deletes_old_raw_readings_and_keeps_rollups(settings: Any) -> None:
    settings.READINGS_RETENTION_DAYS = 30
    old = timezone.now() - timedelta(days=40)
    put("p1", "power", 0, 1, base=old)
    put("p1", "power", 0, 2, base=timezone.now() - timedelta(days=1))
    services.aggregates_compute()
    assert services.readings_cleanup(batch_size=1)["readings"] == 1
    assert Reading.objects.count() == 1
    assert Rollup.objects.filter(resolution="1d").count() == 2


@pytest.mark.usefixtures("lab")
def test_silent_sensor_goes_stale_and_recovers(django_capture_on_commit_callbacks: Any) -> None:
    Sensor.objects.filter(sensor_id="p1").update(
        last_seen=timezone.now() - timedelta(hours=1), expected_interval_s=60
    )
    Sensor.objects.exclude(sensor_id="p1").update(last_seen=timezone.now())
    heard: list[dict[str, Any]] = []
    from energy_dashboard import events

    events.sensor_events.connect(lambda sender, **kw: heard.append(kw), dispatch_uid="t", weak=False)
    try:
        with django_capture_on_commit_callbacks(execute=True, using="sensors"):
            assert services.sensors_mark_stale() == {"stale": 1}
            assert services.sensors_mark_stale() == {"stale": 0}
        with django_capture_on_commit_callbacks(execute=True, using="sensors"):
            put("p1", "power", 0, 5, base=timezone.now() - timedelta(seconds=10))
    finally:
        events.sensor_events.disconnect(dispatch_uid="t")
    assert [(e["sensor_id"], e["event"], e["status"]) for e in heard] == [
        ("p1", "stale", "stale"),
        ("p1", "recovered", "active"),
    ]
