"""The readings store's upkeep: rollups and room metrics brought up to date with what arrived
(each touched room's newest window announced on the bus, `room_metrics`), backfills over a range,
and retention."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connections, transaction
from django.utils import timezone

from energy_dashboard.core.clock import iso_z
from energy_dashboard.core.events import room_metrics, send_on_commit
from energy_dashboard.core.limits import EARLIEST
from sensors import aggregation, analytics_cache
from sensors.models import Reading, Rollup, RoomMetrics, Sensor

DB = "sensors"


def aggregates_compute(*, limit: int = 5_000) -> dict[str, int]:
    """Bring rollups and room metrics up to date with what arrived (incremental, idempotent).

    Announces each touched room's newest window (`room_metrics`). `skipped` counts the dirty marks
    and days it could not compute with (each logged as a warning; see
    aggregation.recompute_dirty).
    """
    done = aggregation.recompute_dirty(limit=limit)
    analytics_cache.days_changed(done.local_days)
    _publish_latest_room_metrics(done.rooms)
    return {"days": done.days, "marks": done.marks, "rooms": len(done.rooms), "skipped": done.skipped}


def _publish_latest_room_metrics(room_pks: set[int]) -> None:
    """Send `room_metrics` for each room's newest window, once what computed it commits."""
    # One indexed lookup per room (the unique key is (room, bucket)): reading every window of
    # the rooms to keep each one's newest read a year of 5-minute windows per room, 19 s for
    # the demo building's backfill.
    for pk in sorted(room_pks):
        metrics = RoomMetrics.objects.filter(room_id=pk).order_by("-bucket").select_related("room").first()
        if metrics is not None:
            send_on_commit(room_metrics, sender=RoomMetrics, using=DB, **room_metrics_payload(metrics))


def room_metrics_payload(metrics: RoomMetrics) -> dict[str, Any]:
    """A room's 5-minute figures as the `room_metrics` topic carries them."""
    return {
        "room": metrics.room.name,
        "bucket": iso_z(metrics.bucket),
        "energy_kwh": metrics.energy_kwh,
        "power_w": metrics.power_w,
        "co2_ppm": metrics.co2_ppm,
        "temperature_c": metrics.temperature_c,
        "humidity_pct": metrics.humidity_pct,
        "occupancy": metrics.occupancy,
        "sensors_reporting": metrics.sensors_reporting,
    }


def rollups_backfill(
    *, since: datetime, until: datetime, sensor_ids: list[str] | None = None
) -> dict[str, int]:
    """Recompute rollups and room metrics over a range (repairs, imports of history).

    Set-based, one local day per transaction (see `aggregation.backfill`): the same rows as the
    incremental job would write for those readings. Announces each touched room's newest window
    (`room_metrics`).
    """
    pks = (
        list(Sensor.objects.filter(sensor_id__in=sensor_ids).values_list("pk", flat=True))
        if sensor_ids
        else None
    )
    if sensor_ids and not pks:
        return {"days": 0, "rooms": 0}
    done = aggregation.backfill(since=since, until=until, sensor_pks=pks)
    analytics_cache.days_changed(done.local_days)
    _publish_latest_room_metrics(done.rooms)
    return {"days": done.days, "rooms": len(done.rooms)}


def readings_cleanup(*, batch_size: int = 10_000, max_batches: int = 1_000) -> dict[str, int]:
    """Delete raw readings older than READINGS_RETENTION_DAYS and quarter-hour rollups older
    than ROLLUP_RETENTION_DAYS, in bounded batches so no transaction holds the table long.

    A retention longer than the product's horizon keeps everything (its cutoff would be before
    EARLIEST, or past datetime's range). Rows are deleted by SQL alone, never loaded: a stored
    instant no Python datetime can hold is deleted like any other."""
    now = timezone.now()
    deleted = {"readings": 0, "rollups": 0}
    targets = [
        (
            "readings",
            _retention_cutoff(now, settings.READINGS_RETENTION_DAYS),
            Reading.objects.all(),
            "timestamp",
        ),
        (
            "rollups",
            _retention_cutoff(now, settings.ROLLUP_RETENTION_DAYS),
            Rollup.objects.filter(resolution=Rollup.Resolution.QUARTER_HOUR),
            "bucket",
        ),
    ]
    for name, cutoff, rows, column in targets:
        if cutoff is None:
            continue
        queryset = rows.filter(**{f"{column}__lt": cutoff})
        for _ in range(max_batches):
            # One statement per batch: DELETE ... WHERE pk IN (SELECT pk ... LIMIT n). A
            # reading's pk is its (sensor, metric, timestamp) key (ADR 0008).
            with transaction.atomic(using=DB):
                # The models declare no manager: the default one is `objects`.
                count, _ = queryset.model._default_manager.filter(
                    pk__in=queryset.values("pk")[:batch_size]
                ).delete()
            deleted[name] += count
            if count < batch_size:
                break
    planner_statistics_refresh()
    return deleted


# Rows SQLite's ANALYZE samples per index: enough for the planner to tell the readings' time
# index from a sensor's whole history, and a few milliseconds whatever the table's size.
SQLITE_ANALYSIS_LIMIT = 1000


def planner_statistics_refresh() -> bool:
    """Refresh SQLite's query-planner statistics (the daily retention job does, and the demo
    after its bulk load); PostgreSQL's autovacuum keeps its own. True when it ran.

    SQLite has none until ANALYZE runs, and without them it reads a room's 5-minute windows
    through each sensor's whole history rather than the readings' time index: a year of history
    made one aggregation run take over a minute. The sample is bounded (`analysis_limit`), so
    this stays cheap on a large database."""
    connection = connections[DB]
    if connection.vendor != "sqlite":
        return False
    with connection.cursor() as cursor:
        cursor.execute(f"PRAGMA analysis_limit = {SQLITE_ANALYSIS_LIMIT}")
        cursor.execute("ANALYZE")
    return True


def _retention_cutoff(now: datetime, days: int) -> datetime | None:
    """`now` less `days`, or None when that is before the horizon (nothing is that old)."""
    if days > (now - EARLIEST).days:
        return None
    return now - timedelta(days=days)
