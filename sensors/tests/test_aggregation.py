"""Rollups and room metrics: incremental, idempotent, correct for late data and DST days."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connections
from django.utils import timezone

from energy_dashboard.testing import AFTER_FIXED_DATES
from sensors import aggregation, services
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


@pytest.mark.clock(AFTER_FIXED_DATES)
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


@pytest.mark.clock(AFTER_FIXED_DATES)
@pytest.mark.usefixtures("lab")
def test_recomputing_is_idempotent() -> None:
    put("p1", "power", 0, 100)
    services.aggregates_compute()
    before = rollups("p1", "power", "15m")
    services.rollups_backfill(since=T0 - timedelta(days=1), until=T0 + timedelta(days=1))
    services.aggregates_compute()
    assert rollups("p1", "power", "15m") == before
    assert Rollup.objects.filter(resolution="15m").count() == 1


@pytest.mark.clock(AFTER_FIXED_DATES)
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


@pytest.mark.clock(AFTER_FIXED_DATES)
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


@pytest.mark.clock(AFTER_FIXED_DATES)
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


@pytest.mark.clock(AFTER_FIXED_DATES)
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
def test_the_daily_retention_job_refreshes_sqlites_planner_statistics() -> None:
    # Without statistics SQLite read a room's windows through each sensor's whole history; the
    # daily job gives it some (PostgreSQL's autovacuum keeps its own: nothing to do there).
    put("p1", "power", 0, 1, base=timezone.now() - timedelta(hours=1))
    connection = connections["sensors"]
    if connection.vendor != "sqlite":
        assert services.planner_statistics_refresh() is False
        return
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS sqlite_stat1")
    services.readings_cleanup()
    with connection.cursor() as cursor:
        cursor.execute("SELECT idx FROM sqlite_stat1 WHERE tbl = 'sensors_reading'")
        assert cursor.fetchall(), "ANALYZE left no statistics for the readings table"


@pytest.mark.usefixtures("lab")
def test_silent_sensor_goes_stale_and_recovers(django_capture_on_commit_callbacks: Any) -> None:
    Sensor.objects.filter(sensor_id="p1").update(
        last_seen=timezone.now() - timedelta(hours=1), expected_interval_s=60
    )
    Sensor.objects.exclude(sensor_id="p1").update(last_seen=timezone.now())
    heard: list[dict[str, Any]] = []
    from energy_dashboard.core import events

    events.sensor_events.connect(lambda sender, **kw: heard.append(kw), dispatch_uid="t", weak=False)
    try:
        with django_capture_on_commit_callbacks(execute=True, using="sensors"):
            assert services.sensors_mark_stale() == {"stale": 1, "skipped": 0}
            assert services.sensors_mark_stale() == {"stale": 0, "skipped": 0}
        with django_capture_on_commit_callbacks(execute=True, using="sensors"):
            put("p1", "power", 0, 5, base=timezone.now() - timedelta(seconds=10))
    finally:
        events.sensor_events.disconnect(dispatch_uid="t")
    assert [(e["sensor_id"], e["event"], e["status"]) for e in heard] == [
        ("p1", "stale", "stale"),
        ("p1", "recovered", "active"),
    ]


# --- The set-based backfill gives the incremental job's rows --------------------------------

Snapshot = tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]


def snapshot() -> Snapshot:
    return (
        list(
            Rollup.objects.order_by("sensor_id", "metric", "resolution", "bucket").values_list(
                "sensor__sensor_id", "metric", "resolution", "bucket", "count", "sum", "min", "max", "mean"
            )
        ),
        list(
            RoomMetrics.objects.order_by("room_id", "bucket").values_list(
                "room__name",
                "bucket",
                "energy_kwh",
                "power_w",
                "co2_ppm",
                "temperature_c",
                "humidity_pct",
                "occupancy",
                "sensors_reporting",
            )
        ),
    )


def ingest_hours(start: datetime, hours: int, step_min: int, part: str = "all") -> None:
    """Readings of every lab sensor from `start`, every `step_min` minutes ("early": all but
    every third, "late": every third); values that add up exactly in floating point, so sums
    do not depend on the order a plan visits rows."""
    metric_of = {"p1": "power", "p2": "power", "e1": "energy", "c1": "co2"}
    items = [
        {
            "sensor_id": sensor,
            "metric": metric,
            "timestamp": iso(start + timedelta(minutes=minute)),
            "value": (minute % 7) * 0.25 + n,
        }
        for n, (sensor, metric) in enumerate(metric_of.items())
        for minute in range(0, hours * 60, step_min)
        if part == "all" or ((minute // step_min) % 3 == 0) == (part == "late")
    ]
    assert services.readings_ingest(readings=items)["accepted"] == len(items)


# Both Lisbon daylight-saving days of 2026 (23 and 25 hours), with a day either side.
DST_SPANS = [datetime(2026, 3, 28, 0, 0, tzinfo=UTC), datetime(2026, 10, 24, 0, 0, tzinfo=UTC)]


@pytest.mark.clock(AFTER_FIXED_DATES)
@pytest.mark.usefixtures("lab")
@pytest.mark.parametrize("span_start", DST_SPANS, ids=["spring-forward", "fall-back"])
def test_set_based_backfill_writes_the_incremental_rows(span_start: datetime, settings: Any) -> None:
    settings.TIME_ZONE = "Europe/Lisbon"
    services.room_create(name="hall")
    services.sensor_register(sensor_id="e2", kind="energy_meter", room_name="hall")
    ingest_hours(span_start, 72, 20, "early")
    services.aggregates_compute()
    ingest_hours(span_start, 72, 20, "late")  # fills the gaps of every day, hours late
    put("e2", "energy", 61, 0.5, base=span_start)
    put("e1", "energy", 7, 4.0, base=span_start + timedelta(days=3))  # the day after the span
    services.aggregates_compute()
    incremental = snapshot()
    assert len(incremental[0]) > 100 and len(incremental[1]) > 100
    daily = [row for row in incremental[0] if row[0] == "e1" and row[2] == "1d"]
    assert sorted({row[3] - prev[3] for prev, row in itertools.pairwise(daily)}) == [
        timedelta(hours=h) for h in ((23, 24) if span_start.month == 3 else (24, 25))
    ]

    Rollup.objects.all().delete()
    RoomMetrics.objects.all().delete()
    done = services.rollups_backfill(
        since=span_start - timedelta(days=1), until=span_start + timedelta(days=5)
    )
    assert done == {"days": 4, "rooms": 2}  # the local days with readings; the day before has none
    assert snapshot() == incremental
    # Idempotent, and in sensor batches of one the same again.
    services.rollups_backfill(since=span_start - timedelta(days=1), until=span_start + timedelta(days=5))
    assert snapshot() == incremental
    Rollup.objects.all().delete()
    RoomMetrics.objects.all().delete()
    aggregation.backfill(
        since=span_start - timedelta(days=1), until=span_start + timedelta(days=5), sensor_batch=1
    )
    assert snapshot() == incremental


@pytest.mark.clock(AFTER_FIXED_DATES)
@pytest.mark.usefixtures("lab")
def test_set_based_backfill_matches_marking_the_range_dirty() -> None:
    ingest_hours(T0 - timedelta(hours=30), 40, 10)
    since, until = T0 - timedelta(hours=20), T0 + timedelta(hours=3)  # cuts days in the middle
    Rollup.objects.all().delete()
    RoomMetrics.objects.all().delete()
    DirtyBucket.objects.all().delete()
    aggregation.mark_range_dirty(since=since, until=until)
    aggregation.recompute_dirty()
    marked = snapshot()
    Rollup.objects.all().delete()
    RoomMetrics.objects.all().delete()
    services.rollups_backfill(since=since, until=until)
    assert snapshot() == marked
    # Whole local days are recomputed, room windows only for the range's hours.
    assert {row[3] for row in marked[0] if row[2] == "1d"} == {
        local_day_bounds((T0 - timedelta(days=1)).date())[0],
        local_day_bounds(T0.date())[0],
    }
    assert min(row[1] for row in marked[1]) == since


@pytest.mark.clock(AFTER_FIXED_DATES)
@pytest.mark.usefixtures("lab")
def test_backfill_of_one_sensor_leaves_the_others() -> None:
    ingest_hours(T0, 3, 5)
    services.aggregates_compute()
    everything = snapshot()
    Rollup.objects.all().delete()
    assert services.rollups_backfill(since=T0, until=T0 + timedelta(hours=3), sensor_ids=["e1"]) == {
        "days": 1,
        "rooms": 1,
    }
    assert {row[0] for row in snapshot()[0]} == {"e1"}
    assert snapshot()[0] == [row for row in everything[0] if row[0] == "e1"]
    assert snapshot()[1] == everything[1]  # the room's windows: from all its sensors, as before
    assert services.rollups_backfill(since=T0, until=T0 + timedelta(hours=3), sensor_ids=["nope"]) == {
        "days": 0,
        "rooms": 0,
    }


@pytest.mark.clock(AFTER_FIXED_DATES)
@pytest.mark.usefixtures("lab")
def test_backfill_keeps_rollups_of_days_whose_readings_retention_deleted() -> None:
    ingest_hours(T0 - timedelta(days=2), 2, 15)
    ingest_hours(T0, 2, 15)
    services.aggregates_compute()
    before = snapshot()
    Reading.objects.filter(timestamp__lt=T0 - timedelta(days=1)).delete()
    assert services.rollups_backfill(since=T0 - timedelta(days=3), until=T0 + timedelta(days=1))["days"] == 1
    assert snapshot() == before
