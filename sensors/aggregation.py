"""Rollups and room metrics, recomputed from the windows that new readings marked dirty.

Incremental: only days with marks are touched. Idempotent: every bucket is recomputed from
its source and upserted, so running twice changes nothing. Correct for late data: a reading
that arrives hours late marks its own window, whatever the time now.
Internal to the sensors module; callers use `sensors.services`.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.db import DatabaseError, connections, transaction
from django.utils import timezone

from energy_dashboard.core.clock import building_tz
from energy_dashboard.core.limits import within_horizon
from sensors.models import DirtyBucket, Metric, Reading, Rollup, RoomMetrics, Sensor, parse_pks

logger = logging.getLogger(__name__)
DB = "sensors"
# Dirty marks cover an hour of one sensor's metric: one mark per hour of a 1-minute stream
# instead of sixty; the job then recomputes that hour's twelve 5-minute room windows.
MARK_WINDOW_S = 3600


def local_day_bounds(day: date) -> tuple[datetime, datetime]:
    """[start, end) in UTC of a local calendar day: 23 or 25 hours on daylight-saving days."""
    tz = building_tz()
    start = datetime.combine(day, time.min, tzinfo=tz).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time.min, tzinfo=tz).astimezone(UTC)
    return start, end


def bucket_sql(vendor: str, column: str, seconds: int) -> str:
    """SQL of the UTC-aligned start of the `seconds`-long bucket that holds `column`."""
    if vendor == "postgresql":
        # date_bin (PostgreSQL 14+): to_timestamp(floor(extract(epoch ...))) did the same in
        # numeric arithmetic, 6x slower over a few days of readings.
        return f"date_bin('{int(seconds)} seconds', {column}, TIMESTAMPTZ '1970-01-01 00:00:00+00')"
    # SQLite keeps datetimes as 'YYYY-MM-DD HH:MM:SS[.ffffff]' UTC text, as Django writes them.
    # '%%s': Django's SQLite cursor turns %s into a placeholder and %% into %.
    return f"datetime((CAST(strftime('%%s', {column}) AS INTEGER) / {seconds}) * {seconds}, 'unixepoch')"


def local_period_sql(column: str, interval: str) -> str:
    """PostgreSQL SQL of the start of the local day, week (Monday) or month (`interval` 1d, 1w,
    1M) that holds `column`, in the zone given as its one parameter (TIME_ZONE)."""
    unit = {"1d": "day", "1w": "week", "1M": "month"}[interval]
    return f"date_trunc('{unit}', {column}, %s)"


def sensor_ids_sql(vendor: str) -> str:
    """SQL aggregate of a group's distinct `sensor_id`s, comma-separated (a dirty mark's)."""
    if vendor == "postgresql":
        return "string_agg(DISTINCT sensor_id::text, ',')"
    return "group_concat(DISTINCT sensor_id)"  # SQLite's separator is a comma


def _in(values: list[Any]) -> str:
    return ", ".join(["%s"] * len(values))


@dataclass
class Recomputed:
    """What a run did."""

    days: int
    marks: int
    rooms: set[int]
    # The local days whose rollups or room metrics were rewritten (for the analytics cache).
    local_days: set[date] = field(default_factory=set)
    # Dirty marks, days and room windows it could not compute with, each logged as a warning.
    skipped: int = 0


def _recompute_day(day: date, sensor_ids: list[int], metrics: list[str]) -> None:
    connection = connections[DB]
    vendor = connection.vendor
    adapt = connection.ops.adapt_datetimefield_value
    start, end = local_day_bounds(day)
    rollup, reading = Rollup._meta.db_table, Reading._meta.db_table
    upsert = (
        "ON CONFLICT (sensor_id, metric, resolution, bucket) DO UPDATE SET count = excluded.count, "
        "sum = excluded.sum, min = excluded.min, max = excluded.max, mean = excluded.mean"
    )
    scope = f"sensor_id IN ({_in(sensor_ids)}) AND metric IN ({_in(metrics)})"
    params = [adapt(start), adapt(end), *sensor_ids, *metrics]
    with connection.cursor() as cursor:
        # Buckets of this day that lost every reading (retention, a re-import) must go too.
        cursor.execute(
            f"DELETE FROM {rollup} WHERE resolution IN ('15m', '1h', '1d') AND bucket >= %s "
            f"AND bucket < %s AND {scope}",
            params,
        )
        bucket15 = bucket_sql(vendor, "timestamp", 900)
        cursor.execute(
            f"INSERT INTO {rollup} (sensor_id, metric, resolution, bucket, count, sum, min, max, mean) "
            f"SELECT sensor_id, metric, '15m', {bucket15}, count(*), sum(value), min(value), max(value), "
            f"avg(value) FROM {reading} WHERE timestamp >= %s AND timestamp < %s AND {scope} "
            f"GROUP BY sensor_id, metric, {bucket15} {upsert}",
            params,
        )
        bucket60 = bucket_sql(vendor, "bucket", 3600)
        cursor.execute(
            f"INSERT INTO {rollup} (sensor_id, metric, resolution, bucket, count, sum, min, max, mean) "
            f"SELECT sensor_id, metric, '1h', {bucket60}, sum(count), sum(sum), min(min), max(max), "
            f"sum(sum) / sum(count) FROM {rollup} WHERE resolution = '15m' AND bucket >= %s "
            f"AND bucket < %s AND {scope} GROUP BY sensor_id, metric, {bucket60} {upsert}",
            params,
        )
        # The day from its quarter hours: always aligned to local midnight, whatever the offset.
        cursor.execute(
            f"INSERT INTO {rollup} (sensor_id, metric, resolution, bucket, count, sum, min, max, mean) "
            f"SELECT sensor_id, metric, '1d', %s, sum(count), sum(sum), min(min), max(max), "
            f"sum(sum) / sum(count) FROM {rollup} WHERE resolution = '15m' AND bucket >= %s "
            f"AND bucket < %s AND {scope} GROUP BY sensor_id, metric {upsert}",
            [adapt(start), *params],
        )


def _recompute_rooms(windows: dict[int, set[datetime]]) -> int:
    """Room metrics of the 5-minute windows of each room's dirty hours, with the rooms' current
    sensors. Returns how many runs of windows failed (each in its own savepoint, logged): the
    others are still computed."""
    # Rooms whose dirty hours form the same runs share one statement (a backfill marks every
    # room's same hours): one scan of the readings instead of one per room.
    by_run: dict[tuple[datetime, datetime], list[int]] = defaultdict(list)
    for room_id, buckets in windows.items():
        # Nearby marked hours are recomputed in one query (the hours between are recomputed
        # too, which changes nothing): a sparse stream does not cost one query per hour.
        for run in _runs(sorted(buckets), 6 * 3600):
            by_run[run].append(room_id)
    failed = 0
    for (first, last), room_ids in sorted(by_run.items()):
        for start in range(0, len(room_ids), 500):
            chunk = sorted(room_ids[start : start + 500])
            try:
                with transaction.atomic(using=DB):
                    _recompute_room_windows(chunk, first, last + timedelta(seconds=MARK_WINDOW_S))
            except DatabaseError as exc:
                logger.warning(
                    "aggregation: skipped the room metrics of rooms %s from %s to %s (%s); fix the "
                    "readings, then run backfill_rollups over that range",
                    chunk,
                    first,
                    last,
                    exc,
                )
                failed += 1
    return failed


def _recompute_room_windows(room_ids: list[int], start: datetime, end: datetime) -> None:
    """Delete and recompute the 5-minute windows in [start, end) of these rooms from raw readings."""
    connection = connections[DB]
    adapt = connection.ops.adapt_datetimefield_value
    reading, sensor, room_metrics = (
        Reading._meta.db_table,
        Sensor._meta.db_table,
        RoomMetrics._meta.db_table,
    )
    bucket5 = bucket_sql(connection.vendor, "r.timestamp", 300)
    rooms = f"room_id IN ({_in(room_ids)})"
    span = [adapt(start), adapt(end)]
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {room_metrics} WHERE {rooms} AND bucket >= %s AND bucket < %s", [*room_ids, *span]
        )
        # Power: each sensor's mean over the window, summed over the room's sensors. Energy and
        # power are net of sub-meters (sensors.hierarchy): a sub-meter's readings count again,
        # negated, in its parent's room (the second branch), so a room holds its meters'
        # unmetered remainders and a nested meter is never counted twice. `own` keeps those
        # negated rows out of the count of the room's reporting sensors.
        cursor.execute(
            f"INSERT INTO {room_metrics} (room_id, bucket, energy_kwh, power_w, co2_ppm, "
            "temperature_c, humidity_pct, occupancy, sensors_reporting, computed_at) "
            "SELECT room_id, b, "
            "sum(CASE WHEN metric = 'energy' THEN total END), "
            "sum(CASE WHEN metric = 'power' THEN mean END), "
            "avg(CASE WHEN metric = 'co2' THEN mean END), "
            "avg(CASE WHEN metric = 'temperature' THEN mean END), "
            "avg(CASE WHEN metric = 'humidity' THEN mean END), "
            "sum(CASE WHEN metric = 'occupancy' THEN mean END), "
            f"count(DISTINCT CASE WHEN own = 1 THEN sensor_id END), %s FROM ("
            f"SELECT s.room_id AS room_id, r.sensor_id AS sensor_id, r.metric AS metric, "
            f"{bucket5} AS b, sum(r.value) AS total, avg(r.value) AS mean, 1 AS own "
            f"FROM {reading} r JOIN {sensor} s ON s.id = r.sensor_id "
            f"WHERE s.{rooms} AND r.timestamp >= %s AND r.timestamp < %s "
            f"GROUP BY s.room_id, r.sensor_id, r.metric, {bucket5} "
            f"UNION ALL SELECT p.room_id, r.sensor_id, r.metric, {bucket5}, -sum(r.value), -avg(r.value), 0 "
            f"FROM {reading} r JOIN {sensor} s ON s.id = r.sensor_id JOIN {sensor} p ON p.id = s.part_of_id "
            f"WHERE p.{rooms} AND r.metric IN ('energy', 'power') AND r.timestamp >= %s AND r.timestamp < %s "
            f"GROUP BY p.room_id, r.sensor_id, r.metric, {bucket5}) per_sensor "
            "GROUP BY room_id, b",
            [adapt(timezone.now()), *room_ids, *span, *room_ids, *span],
        )


def _runs(buckets: list[datetime], step_s: int) -> list[tuple[datetime, datetime]]:
    """Contiguous runs of bucket starts, as (first, last)."""
    runs: list[tuple[datetime, datetime]] = []
    for bucket in buckets:
        if runs and (bucket - runs[-1][1]).total_seconds() <= step_s:
            runs[-1] = (runs[-1][0], bucket)
        else:
            runs.append((bucket, bucket))
    return runs


def _unusable(sensor_ids: str, metric: str, bucket: datetime) -> str | None:
    """Why a dirty mark cannot be computed with (a row no ingest writes: an old or edited one),
    or None."""
    if metric not in Metric.values:
        return f"unknown metric {metric!r}"
    if not within_horizon(bucket):
        return f"hour {bucket.isoformat()} is outside the horizon"
    try:
        parse_pks(sensor_ids)
    except ValueError:
        return f"sensor_ids {sensor_ids[:80]!r} is not a list of sensor keys"
    return None


def recompute_dirty(*, limit: int = 5_000) -> Recomputed:
    """Recompute what the oldest `limit` dirty marks point at, then delete exactly those marks
    (a reading that arrived during the run has its own, newer mark for the next run). A mark
    is one stored batch's (metric, hour) and names up to all of its sensors.

    What it cannot compute with is skipped, logged as a warning and counted in `skipped`: a
    mark no ingest writes (an unknown metric, an hour outside the horizon, unreadable sensor
    keys: it is deleted with the others, since no run could ever use it), and a day or a run of
    room windows whose statements fail (stored values whose sum overflows; in a savepoint, so
    the other days are still computed). One such row stopped every run before: the marks were
    never deleted and aggregation stopped for good.
    """
    rows = list(
        DirtyBucket.objects.order_by("id").values_list("id", "sensor_ids", "metric", "bucket")[:limit]
    )
    if not rows:
        return Recomputed(0, 0, set())
    skipped = 0
    # Each row names its sensors; from here on, one mark per sensor (repeats are harmless).
    marks: list[tuple[int, int, str, datetime]] = []
    for mark_id, ids, metric, bucket in rows:
        reason = _unusable(ids, metric, bucket)
        if reason is not None:
            logger.warning("aggregation: skipped dirty mark %s (%s); deleted", mark_id, reason)
            skipped += 1
            continue
        marks.extend((mark_id, sensor_id, metric, bucket) for sensor_id in parse_pks(ids))
    tz = building_tz()
    by_day: dict[date, tuple[set[int], set[str]]] = defaultdict(lambda: (set(), set()))
    touched: set[date] = set()
    for _, sensor_id, metric, bucket in marks:
        sensors, metrics = by_day[bucket.astimezone(tz).date()]
        sensors.add(sensor_id)
        metrics.add(metric)
        # A UTC-aligned window may end in the next local day (zones with half-hour offsets).
        touched.add((bucket + timedelta(seconds=MARK_WINDOW_S - 1)).astimezone(tz).date())
    touched |= set(by_day)
    # A sensor's readings count in its room's windows and, for a sub-meter's energy and power,
    # in its parent meter's room's (net of sub-meters): both rooms are recomputed.
    rooms_of: dict[int, set[int]] = defaultdict(set)
    for pk, room_id, parent_room_id in Sensor.objects.filter(id__in={m[1] for m in marks}).values_list(
        "id", "room_id", "part_of__room_id"
    ):
        rooms_of[pk].update(room for room in (room_id, parent_room_id) if room is not None)
    windows: dict[int, set[datetime]] = defaultdict(set)
    for _, sensor_id, _, bucket in marks:
        for room_id in rooms_of.get(sensor_id, ()):
            windows[room_id].add(bucket)
    days = 0
    with transaction.atomic(using=DB):
        for day, (sensors, metrics) in sorted(by_day.items()):
            try:
                with transaction.atomic(using=DB):
                    _recompute_day(day, sorted(sensors), sorted(metrics))
                days += 1
            except DatabaseError as exc:
                logger.warning(
                    "aggregation: skipped day %s of sensors %s (%s); its rollups stay as they were: "
                    "fix the readings, then run backfill_rollups over that day",
                    day.isoformat(),
                    sorted(sensors),
                    exc,
                )
                skipped += 1
        skipped += _recompute_rooms(windows)
        # Exactly the marks read, by id (not by range: a transaction still open when we read may
        # commit a lower id later; its mark must stay). Chunks keep SQLite under its variable limit.
        ids = [row[0] for row in rows]
        for start in range(0, len(ids), 10_000):
            DirtyBucket.objects.filter(id__in=ids[start : start + 10_000])._raw_delete(DB)

    logger.info(
        "recomputed %d day(s) from %d dirty window(s), %d room(s), %d skipped",
        days,
        len(marks),
        len(windows),
        skipped,
    )
    return Recomputed(days, len(marks), set(windows), touched, skipped)


def mark_range_dirty(*, since: datetime, until: datetime, sensor_pks: list[int] | None = None) -> int:
    """Mark every hour with readings in [since, until) dirty (backfills, repairs)."""
    connection = connections[DB]
    adapt = connection.ops.adapt_datetimefield_value
    bucket5 = bucket_sql(connection.vendor, "timestamp", MARK_WINDOW_S)
    scope = f" AND sensor_id IN ({_in(sensor_pks)})" if sensor_pks else ""
    table = DirtyBucket._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (metric, bucket, sensor_ids) "
            f"SELECT metric, {bucket5}, {sensor_ids_sql(connection.vendor)} FROM {Reading._meta.db_table} "
            f"WHERE timestamp >= %s AND timestamp < %s{scope} GROUP BY 1, 2",
            [adapt(since), adapt(until), *(sensor_pks or [])],
        )

        return int(cursor.rowcount)


def local_days(since: datetime, until: datetime) -> list[date]:
    """The building's calendar days that [since, until) overlaps, in order."""
    tz = building_tz()
    first = since.astimezone(tz).date()
    last = (until - timedelta(microseconds=1)).astimezone(tz).date()
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def backfill(
    *, since: datetime, until: datetime, sensor_pks: list[int] | None = None, sensor_batch: int = 500
) -> Recomputed:
    """Recompute rollups and room metrics for the readings in [since, until), set-based.

    The same recomputation as marking every hour with readings dirty and running
    `recompute_dirty` (so the same rows), without the marks: per local day, the sensors and
    metrics with readings in the range and the rooms' hours are read as sets (a few hundred
    rows), then the day is recomputed with `INSERT ... SELECT ... GROUP BY ... ON CONFLICT DO
    UPDATE` over at most `sensor_batch` sensors per statement. One transaction per day, so a
    backfill of months never holds one long transaction. Days without readings in the range are
    left alone: their rollups may be all that retention kept.
    """
    connection = connections[DB]
    adapt = connection.ops.adapt_datetimefield_value
    reading, sensor = Reading._meta.db_table, Sensor._meta.db_table
    hour = bucket_sql(connection.vendor, "r.timestamp", MARK_WINDOW_S)
    scope = f" AND r.sensor_id IN ({_in(sensor_pks)})" if sensor_pks else ""
    days, rooms, touched, skipped = 0, set(), set(), 0
    for day in local_days(since, until):
        day_start, day_end = local_day_bounds(day)
        span = [adapt(max(since, day_start)), adapt(min(until, day_end)), *(sensor_pks or [])]
        with transaction.atomic(using=DB), connection.cursor() as cursor:
            cursor.execute(
                f"SELECT DISTINCT r.sensor_id, r.metric FROM {reading} r "
                f"WHERE r.timestamp >= %s AND r.timestamp < %s{scope}",
                span,
            )
            pairs = cursor.fetchall()
            if not pairs:
                continue
            # Like the dirty marks of a day: every sensor with data by every metric with data.
            sensor_ids = sorted({pk for pk, _ in pairs})
            metrics = sorted({metric for _, metric in pairs})
            for start in range(0, len(sensor_ids), sensor_batch):
                _recompute_day(day, sensor_ids[start : start + sensor_batch], metrics)
            # Each reading's room, and its parent meter's room for a sub-meter (net of sub-meters).
            cursor.execute(
                f"SELECT DISTINCT s.room_id, {hour} FROM {reading} r JOIN {sensor} s ON s.id = r.sensor_id "
                f"WHERE s.room_id IS NOT NULL AND r.timestamp >= %s AND r.timestamp < %s{scope} "
                f"UNION SELECT DISTINCT p.room_id, {hour} FROM {reading} r "
                f"JOIN {sensor} s ON s.id = r.sensor_id JOIN {sensor} p ON p.id = s.part_of_id "
                f"WHERE p.room_id IS NOT NULL AND r.timestamp >= %s AND r.timestamp < %s{scope}",
                span + span,
            )
            windows: dict[int, set[datetime]] = defaultdict(set)
            for room_id, bucket in cursor.fetchall():
                windows[room_id].add(as_datetime(bucket))
            skipped += _recompute_rooms(windows)
            days += 1
            rooms |= set(windows)
            touched.add(day)
    logger.info("backfilled %d day(s), %d room(s) in [%s, %s)", days, len(rooms), since, until)
    return Recomputed(days, 0, rooms, touched, skipped)


def as_datetime(value: Any) -> datetime:
    """A bucket computed in SQL, as the driver returns it (SQLite: text), as an aware UTC datetime."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(value).replace(tzinfo=UTC)
