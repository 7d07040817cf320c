"""The read side of the sensors module: every query that answers a question about the data.

One sensor's series, energy per interval, the summary, free queries, a room's latest figures,
and what other modules read (latest power, quarter-hour load). Aggregates come from the
rollups (15m, 1h, local 1d), which the room-metrics job keeps up to date every 5 minutes; raw
readings answer `resolution=raw`. Internal to the sensors module: `sensors.services` gives the
reads that other modules and the views use, under the names they have here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
from django.conf import settings
from django.db import connections
from django.db.models import Avg, Case, IntegerField, OuterRef, Q, QuerySet, Subquery, Sum, Value, When
from django.utils import timezone

from energy_dashboard.core.clock import building_tz, iso_z
from sensors import analytics_cache, hierarchy
from sensors.aggregation import (
    as_datetime,
    bucket_sql,
    local_day_bounds,
    local_days,
    local_period_sql,
)
from sensors.filters import SensorFilter
from sensors.hierarchy import UNASSIGNED
from sensors.models import MAX_METER_DEPTH, Metric, Reading, Rollup, Room, RoomMetrics, Sensor

DB = "sensors"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Rows fetched from the database at a time while a series or a query is read: an export
# streams its range holding one chunk, never the range.
CHUNK_ROWS = 2_000

# The metric each kind of sensor reports, which its series shows when none is asked (named in
# lower case as the public face gives it: `sensors.services.default_metric`).
default_metric: dict[str, str] = {
    Sensor.Kind.ENERGY_METER: Metric.ENERGY,
    Sensor.Kind.POWER: Metric.POWER,
    Sensor.Kind.CO2: Metric.CO2,
    Sensor.Kind.TEMPERATURE: Metric.TEMPERATURE,
    Sensor.Kind.HUMIDITY: Metric.HUMIDITY,
    Sensor.Kind.OCCUPANCY: Metric.OCCUPANCY,
}
# Metrics whose natural aggregate is a sum (energy in an interval); the others average.
SUMMED = {Metric.ENERGY}
# The latest power reading of a sensor counts as "now" for this long.
CURRENT_WINDOW = timedelta(minutes=15)
# Comfort bands (EN 16798-1 category II, roughly) for the summary's comfort figures.
COMFORT = {
    Metric.CO2: (0.0, 1000.0),
    Metric.TEMPERATURE: (20.0, 26.0),
    Metric.HUMIDITY: (30.0, 60.0),
}


def local_iso(moment: datetime) -> str:
    """ISO 8601 in the building's time zone, with its offset."""
    return moment.astimezone(building_tz()).isoformat()


# --- One sensor's series --------------------------------------------------------------------


def _chunked(rows: QuerySet[Any], limit: int | None) -> Iterable[Any]:
    """A page (`limit` rows) as one fetch, or the whole range (None) read CHUNK_ROWS at a time
    (a server-side cursor on PostgreSQL): an export holds a chunk, never the range."""
    return rows.iterator(chunk_size=CHUNK_ROWS) if limit is None else rows[:limit]


RAW_COLUMNS = ("timestamp", "value", "quality")
ROLLUP_COLUMNS = ("timestamp", "value", "count", "sum", "min", "max", "mean")


def raw_series(
    *, sensor: Sensor, metric: str, start: datetime, end: datetime, after: datetime | None, limit: int | None
) -> Iterator[dict[str, Any]]:
    """Raw points in [start, end), after `after` (keyset cursor), oldest first: a page of at
    most `limit`, or (None) the whole range, read in chunks as it is consumed."""
    queryset = Reading.objects.filter(
        sensor=sensor, metric=metric, timestamp__gte=start, timestamp__lt=end
    ).order_by("timestamp")
    if after is not None:
        queryset = queryset.filter(timestamp__gt=after)
    rows = queryset.values_list("timestamp", "value", "estimated")
    for ts, value, estimated in _chunked(rows, limit):
        yield {"timestamp": iso_z(ts), "value": value, "quality": "estimated" if estimated else "measured"}


def rollup_series(
    *,
    sensor: Sensor,
    metric: str,
    resolution: str,
    start: datetime,
    end: datetime,
    after: datetime | None,
    limit: int | None,
) -> Iterator[dict[str, Any]]:
    """Rollup buckets starting in [start, end), after `after`, oldest first: a page of at most
    `limit`, or (None) the whole range, read in chunks as it is consumed."""
    queryset = Rollup.objects.filter(
        sensor=sensor, metric=metric, resolution=resolution, bucket__gte=start, bucket__lt=end
    ).order_by("bucket")
    if after is not None:
        queryset = queryset.filter(bucket__gt=after)
    summed = metric in SUMMED
    rows = queryset.values_list("bucket", "count", "sum", "min", "max", "mean")
    for bucket, count, total, low, high, mean in _chunked(rows, limit):
        yield {
            "timestamp": iso_z(bucket),
            "value": total if summed else mean,
            "count": count,
            "sum": total,
            "min": low,
            "max": high,
            "mean": mean,
        }


def sensor_series_rows(
    *,
    sensor: Sensor,
    metric: str,
    resolution: str,
    start: datetime,
    end: datetime,
    after: datetime | None = None,
    limit: int | None = None,
) -> Iterator[dict[str, Any]]:
    """One sensor's points, oldest first, after `after` (keyset cursor): raw readings
    (`resolution="raw"`) or rollup buckets; read from the database in chunks while they are
    consumed (an export streams its range), every row when `limit` is None."""
    if resolution == "raw":
        return raw_series(sensor=sensor, metric=metric, start=start, end=end, after=after, limit=limit)
    return rollup_series(
        sensor=sensor, metric=metric, resolution=resolution, start=start, end=end, after=after, limit=limit
    )


def sensor_series(
    *,
    sensor: Sensor,
    metric: str,
    resolution: str,
    start: datetime,
    end: datetime,
    after: datetime | None,
    limit: int,
) -> list[dict[str, Any]]:
    """A page of one sensor's points (at most `limit`) as a list: `sensor_series_rows`' first
    `limit` rows, for an answer that is sent whole."""
    return list(
        sensor_series_rows(
            sensor=sensor,
            metric=metric,
            resolution=resolution,
            start=start,
            end=end,
            after=after,
            limit=limit,
        )
    )


# --- Energy per interval --------------------------------------------------------------------

INTERVALS = ("15m", "1h", "1d", "1w", "1M")
# The key of the whole building's series (`energy_rows` with no room or sensor named).
BUILDING = "all sensors"


def _period_start(moment: datetime, interval: str) -> datetime:
    """The local day, week (Monday) or month that holds an instant, as a UTC instant."""
    local = moment.astimezone(building_tz()).date()
    if interval == "1w":
        local -= timedelta(days=local.weekday())
    elif interval == "1M":
        local = local.replace(day=1)
    return local_day_bounds(local)[0]


@dataclass
class EnergySeries:
    """Energy per interval for one room, one sensor or the whole building."""

    key: str
    kind: str  # "room", "sensor" or "building"
    points: dict[datetime, float]


def energy_rows(
    *,
    rooms: list[str],
    sensor_ids: list[str],
    start: datetime,
    end: datetime,
    interval: str,
    stream: bool = False,
) -> Iterator[tuple[str, str, datetime, float]]:
    """(kind, key, period start, kWh) in [start, end): each room's, then each sensor's, oldest
    period first; with no room and no sensor named, the whole building's (kind "building").

    A room's energy comes from its 5-minute room metrics (the energy of the sensors it held
    when the window was computed, net of their sub-meters: sensors.hierarchy), a sensor's from
    its rollups (15m, 1h; 1d for longer intervals). The building's is its top-level meters'
    energy rollups, those in no room too (a sub-meter's energy is in its parent's): the total
    the summary shows. Days, weeks and months are local calendar periods (a
    daylight-saving day is 23 or 25 hours).

    Summed per period in the database and read CHUNK_ROWS at a time as the caller consumes
    them; with `stream` (an export) through a server-side cursor on PostgreSQL, so not even the
    database driver holds the answer. A JSON answer holds only its points, which the API bounds
    (ANALYTICS_MAX_POINTS). PostgreSQL folds into local periods itself (`date_trunc` in the
    building's zone); SQLite sends UTC hours (rooms) or local days (sensors), folded here.
    """
    if rooms:
        yield from _room_rows(rooms, start, end, interval, stream)
    if sensor_ids:
        yield from _rollup_rows(sensor_ids, start, end, interval, stream)
    if not rooms and not sensor_ids:
        yield from _rollup_rows(None, start, end, interval, stream)


def _streamed(sql: str, params: list[Any], stream: bool) -> Iterator[tuple[Any, ...]]:
    """The rows of a query on the sensors database, fetched CHUNK_ROWS at a time; with
    `stream`, from a server-side cursor on PostgreSQL (whose planner then favours the first
    rows, and which costs round trips a bounded JSON answer does without)."""
    connection = connections[DB]
    with connection.chunked_cursor() if stream else connection.cursor() as cursor:
        cursor.execute(sql, params)
        while rows := cursor.fetchmany(CHUNK_ROWS):
            yield from rows


def _folded(
    rows: Iterator[tuple[Any, ...]], kind: str, interval: str, fold: bool
) -> Iterator[tuple[str, str, datetime, float]]:
    """Rows (key, moment, kWh) in key and time order as (kind, key, period, kWh), the rows of
    a period summed when `fold` (they follow each other: periods are in time order too)."""
    current: tuple[str, datetime] | None = None
    total = 0.0
    for key, moment, kwh in rows:
        at = as_datetime(moment)
        if fold:
            at = _period_start(at, interval)
        if current == (key, at):
            total += kwh
            continue
        if current is not None:
            yield kind, current[0], current[1], total
        current, total = (key, at), kwh
    if current is not None:
        yield kind, current[0], current[1], total


def _period_sql(column: str, interval: str, hours: bool) -> tuple[str, list[Any], bool]:
    """SQL of the period that holds `column`, its parameters, and whether the rows still need
    folding here. `hours`: the column is a room's 5-minute window, which becomes a quarter hour
    or an hour first (rollup buckets are already a quarter hour, an hour or a local day)."""
    vendor = connections[DB].vendor
    if interval in ("15m", "1h"):
        return (
            (bucket_sql(vendor, column, 900 if interval == "15m" else 3600) if hours else column),
            [],
            False,
        )
    if vendor == "postgresql":
        return local_period_sql(column, interval), [settings.TIME_ZONE], False
    if hours:
        return bucket_sql(vendor, column, 3600), [], True
    return column, [], interval != "1d"  # a daily rollup's bucket is its local midnight


def _room_rows(
    rooms: list[str], start: datetime, end: datetime, interval: str, stream: bool
) -> Iterator[tuple[str, str, datetime, float]]:
    # By room ids: then the unique key (room, bucket) serves the range of each room; joined by
    # name the planner scans every room's windows once the table is large.
    names = dict(Room.objects.filter(name__in=rooms).values_list("id", "name"))
    if not names:
        return
    adapt = connections[DB].ops.adapt_datetimefield_value
    period, params, fold = _period_sql("w.bucket", interval, hours=True)
    rows = _streamed(
        f"SELECT w.room_id, {period}, sum(w.energy_kwh) FROM {RoomMetrics._meta.db_table} w "  # noqa: S608 (our identifiers; values are parameters)
        f"WHERE w.room_id IN ({', '.join(['%s'] * len(names))}) AND w.bucket >= %s AND w.bucket < %s "
        "AND w.energy_kwh IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2",
        [*params, *names, adapt(start), adapt(end)],
        stream,
    )
    yield from _folded(((names[pk], moment, kwh) for pk, moment, kwh in rows), "room", interval, fold)


def _rollup_rows(
    sensor_ids: list[str] | None, start: datetime, end: datetime, interval: str, stream: bool
) -> Iterator[tuple[str, str, datetime, float]]:
    """Energy rollups per period of the named sensors, or of every sensor summed (None)."""
    adapt = connections[DB].ops.adapt_datetimefield_value
    resolution = {"15m": "15m", "1h": "1h"}.get(interval, "1d")
    period, params, fold = _period_sql("r.bucket", interval, hours=False)
    where = "r.metric = %s AND r.resolution = %s AND r.bucket >= %s AND r.bucket < %s"
    span = [Metric.ENERGY.value, resolution, adapt(start), adapt(end)]
    table = Rollup._meta.db_table
    if sensor_ids is None:
        # The building's: its top-level meters' only, a sub-meter's energy is in its parent's.
        top_level = (
            f"r.sensor_id NOT IN (SELECT id FROM {Sensor._meta.db_table} WHERE part_of_id IS NOT NULL)"  # noqa: S608 (our identifiers)
        )
        rows = _streamed(
            f"SELECT {period}, sum(r.sum) FROM {table} r WHERE {where} AND {top_level} GROUP BY 1 ORDER BY 1",  # noqa: S608 (our identifiers; values are parameters)
            [*params, *span],
            stream,
        )
        yield from _folded(((BUILDING, moment, kwh) for moment, kwh in rows), "building", interval, fold)
        return
    # By the sensors' keys: the unique key (sensor, metric, resolution, bucket) serves each range.
    names = dict(Sensor.objects.filter(sensor_id__in=sensor_ids).values_list("id", "sensor_id"))
    if not names:
        return
    rows = _streamed(
        f"SELECT r.sensor_id, {period}, sum(r.sum) FROM {table} r "  # noqa: S608 (our identifiers; values are parameters)
        f"WHERE r.sensor_id IN ({', '.join(['%s'] * len(names))}) AND {where} GROUP BY 1, 2 ORDER BY 1, 2",
        [*params, *names, *span],
        stream,
    )
    yield from _folded(((names[pk], moment, kwh) for pk, moment, kwh in rows), "sensor", interval, fold)


def energy_per_interval(
    *, rooms: list[str], sensor_ids: list[str], start: datetime, end: datetime, interval: str
) -> list[EnergySeries]:
    """kWh per interval in [start, end) for each room or sensor named (a series for each, empty
    when nothing is known by that name), or for the whole building when none is: see
    `energy_rows`."""
    series: dict[tuple[str, str], dict[datetime, float]] = {}
    for key in rooms:
        series[("room", key)] = {}
    for key in sensor_ids:
        series[("sensor", key)] = {}
    if not rooms and not sensor_ids:
        series[("building", BUILDING)] = {}
    for kind, key, at, kwh in energy_rows(
        rooms=rooms, sensor_ids=sensor_ids, start=start, end=end, interval=interval
    ):
        series[(kind, key)][at] = kwh
    return [EnergySeries(key, kind, points) for (kind, key), points in series.items()]


def energy_report(
    *, rooms: list[str], sensor_ids: list[str], start: datetime, end: datetime, interval: str
) -> dict[str, Any]:
    """The /analytics/energy answer: each room's or sensor's total and points, local times;
    `scope` says whether they are the series named ("selection") or the whole building's."""
    series = energy_per_interval(rooms=rooms, sensor_ids=sensor_ids, start=start, end=end, interval=interval)
    return {
        "interval": interval,
        "timezone": settings.TIME_ZONE,
        "start": iso_z(start),
        "end": iso_z(end),
        "scope": "selection" if rooms or sensor_ids else "building",
        "series": [
            {
                s.kind: s.key,
                "total_kwh": sum(s.points.values()),
                "points": [{"start": local_iso(at), "energy_kwh": kwh} for at, kwh in s.points.items()],
            }
            for s in series
        ],
    }


def energy_report_json(
    *, rooms: list[str], sensor_ids: list[str], start: datetime, end: datetime, interval: str
) -> bytes:
    """`energy_report` as JSON, from the analytics cache while its days' data is unchanged
    (sensors.analytics_cache). The cache reads one version per local day of the range: the
    API bounds the range (ANALYTICS_MAX_RANGE_DAYS)."""
    request = "|".join([",".join(rooms), ",".join(sensor_ids), iso_z(start), iso_z(end), interval])

    def compute() -> bytes:
        report = energy_report(rooms=rooms, sensor_ids=sensor_ids, start=start, end=end, interval=interval)
        return orjson.dumps(report)

    return analytics_cache.cached("energy", request, local_days(start, end), compute)


def bucket_count(start: datetime, end: datetime, interval: str) -> int:
    """How many `interval` buckets (15m, 1h: UTC-aligned; 1d, 1w, 1M: local calendar) [start,
    end) touches, a bucket only partly inside counting too. Arithmetic only: nothing is listed."""
    if interval in ("15m", "1h"):
        step = timedelta(seconds=900 if interval == "15m" else 3600)
        return -((EPOCH - end) // step) - (start - EPOCH) // step
    tz = building_tz()
    first = start.astimezone(tz).date()
    last = (end - timedelta(microseconds=1)).astimezone(tz).date()
    if interval == "1d":
        return (last - first).days + 1
    if interval == "1w":
        return (
            (last - timedelta(days=last.weekday())) - (first - timedelta(days=first.weekday()))
        ).days // 7 + 1
    return (last.year - first.year) * 12 + last.month - first.month + 1


# --- The summary ----------------------------------------------------------------------------


@dataclass
class _SensorEnergy:
    """A sensor's kWh since today's, this week's and this month's local start."""

    pk: int
    sensor_id: str
    kind: str
    room: str
    since: dict[str, float | None]


def _energy_per_sensor(starts: dict[str, datetime]) -> list[_SensorEnergy]:
    """Each energy sensor's kWh since each of `starts`, from daily rollups, in one query."""
    sums = {name: Sum("sum", filter=Q(bucket__gte=since)) for name, since in starts.items()}
    # Grouped by the sensor's key alone (an integer), then named from the registry: cheaper
    # than grouping the joined text columns. (Each row also has a key per start, annotated.)
    rows: Iterable[Mapping[str, Any]] = (
        Rollup.objects.filter(
            metric=Metric.ENERGY, resolution=Rollup.Resolution.DAY, bucket__gte=min(starts.values())
        )
        .values("sensor_id")
        .annotate(**sums)
        .order_by()
    )
    names = {
        pk: (sensor_id, kind, room)
        for pk, sensor_id, kind, room in Sensor.objects.values_list("pk", "sensor_id", "kind", "room__name")
    }
    return [
        _SensorEnergy(
            row["sensor_id"],
            *names[row["sensor_id"]][:2],
            names[row["sensor_id"]][2] or UNASSIGNED,
            {name: row[name] for name in starts},
        )
        for row in rows
    ]


def _totals(
    sensors: list[_SensorEnergy], period: str, key: Callable[[_SensorEnergy], str]
) -> dict[str, float]:
    """kWh of a period per key (kind, sensor); keys with nothing in the period are left out."""
    totals: dict[str, float] = defaultdict(float)
    for sensor in sensors:
        value = sensor.since[period]
        if value is not None:
            totals[key(sensor)] += value
    return dict(totals)


def _of(sensors: list[_SensorEnergy], period: str) -> list[tuple[int, str, float]]:
    """(pk, room, kWh) of the sensors with energy in the period."""
    return [(s.pk, s.room, value) for s in sensors if (value := s.since[period]) is not None]


def analytics_summary(now: datetime | None = None) -> dict[str, Any]:
    """Current power, energy today / this week / this month (per room and per kind), top
    consumers this week and comfort figures per room.

    Totals count a nested meter once (sensors.hierarchy): the building's and each kind's are
    the top-level meters'; each room's is its meters' net of their sub-meters (a meter's
    unmetered remainder stays in its room), so the rooms' add up to the building's."""
    now = now or timezone.now()
    today = now.astimezone(building_tz()).date()
    day_start = local_day_bounds(today)[0]
    week_start = local_day_bounds(today - timedelta(days=today.weekday()))[0]
    month_start = local_day_bounds(today.replace(day=1))[0]

    # Each power sensor's newest reading of the last 15 minutes, summed: the building's from
    # its top-level meters, each room's net of its meters' sub-meters (sensors.hierarchy).
    tree = hierarchy.meters()
    newest_power: dict[int, tuple[int, str | None, float]] = {}
    for sensor_pk, room, value in (
        Reading.objects.filter(metric=Metric.POWER, timestamp__gte=now - CURRENT_WINDOW, timestamp__lte=now)
        .order_by("sensor_id", "-timestamp")
        .values_list("sensor_id", "sensor__room__name", "value")
    ):
        newest_power.setdefault(sensor_pk, (sensor_pk, room, value))
    power_total = tree.top_level_total((pk, value) for pk, _, value in newest_power.values())
    power_by_room = tree.shares(newest_power.values())

    periods = ("today", "week", "month")
    sensors = _energy_per_sensor({"today": day_start, "week": week_start, "month": month_start})
    energy = {name: tree.shares(_of(sensors, name)) for name in periods}
    top_level = [s for s in sensors if tree.is_top_level(s.pk)]
    by_kind = {name: _totals(top_level, name, lambda s: s.kind) for name in periods}
    top = sorted(_totals(sensors, "week", lambda s: s.sensor_id).items(), key=lambda kv: kv[1], reverse=True)[
        :10
    ]

    comfort: dict[str, Any] = {}
    # By room ids: the unique key (room, bucket) then serves it, not a scan of every window.
    latest_windows = RoomMetrics.objects.filter(
        room_id__in=list(Room.objects.values_list("id", flat=True)), bucket__gte=now - timedelta(hours=1)
    ).select_related("room")
    # Per room and metric, the newest window that has it: a room's newest window may hold only
    # energy (a meter's quarter hour) while its CO2 sensor reported in the window before.
    newest: dict[str, dict[str, tuple[datetime, float]]] = {}
    for window in latest_windows:
        room = newest.setdefault(window.room.name, {})
        for metric, value in (
            (Metric.CO2, window.co2_ppm),
            (Metric.TEMPERATURE, window.temperature_c),
            (Metric.HUMIDITY, window.humidity_pct),
        ):
            if value is not None and (metric not in room or window.bucket > room[metric][0]):
                room[metric] = (window.bucket, value)
    outside = 0
    for name, known in sorted(newest.items()):
        value_of = {metric: value for metric, (_, value) in known.items()}
        figures: dict[str, Any] = {
            "co2_ppm": value_of.get(Metric.CO2),
            "temperature_c": value_of.get(Metric.TEMPERATURE),
            "humidity_pct": value_of.get(Metric.HUMIDITY),
            "as_of": iso_z(max(bucket for bucket, _ in known.values())) if known else None,
        }
        flags = [
            metric
            for metric in (Metric.CO2, Metric.TEMPERATURE, Metric.HUMIDITY)
            if metric in value_of and not COMFORT[metric][0] <= value_of[metric] <= COMFORT[metric][1]
        ]
        figures["outside_comfort"] = flags
        outside += bool(flags)
        comfort[name] = figures
    return {
        "as_of": iso_z(now),
        "timezone": str(building_tz()),
        "current_power_w": power_total,
        "current_power_by_room_w": dict(power_by_room),
        "energy_kwh": {
            name: tree.top_level_total((pk, kwh) for pk, _, kwh in _of(sensors, name)) for name in periods
        },
        "energy_by_room_kwh": energy,
        "energy_by_kind_kwh": by_kind,
        "top_consumers_week_kwh": [{"sensor_id": key, "energy_kwh": value} for key, value in top],
        "comfort": {
            "rooms": comfort,
            "rooms_outside_comfort": outside,
            "bands": {str(metric): list(band) for metric, band in COMFORT.items()},
        },
    }


# --- Free queries ---------------------------------------------------------------------------

AGGREGATIONS = ("raw", "avg", "sum", "min", "max", "count")


def analytics_summary_json() -> bytes:
    """`analytics_summary` as JSON, computed at most once per ANALYTICS_SUMMARY_MAX_AGE
    seconds (and again as soon as this month's aggregates or the registry change): every
    dashboard polls it, and its "current power" is the newest reading of the last 15 minutes
    anyway. Its `as_of` says when it was computed."""
    now = timezone.now()
    max_age = settings.ANALYTICS_SUMMARY_MAX_AGE_S
    if max_age <= 0:
        return orjson.dumps(analytics_summary(now))
    today = now.astimezone(building_tz()).date()
    first = min(today.replace(day=1), today - timedelta(days=today.weekday()))
    days = local_days(local_day_bounds(first)[0], now)  # this week's and this month's
    slot = str(int(now.timestamp() // max_age))
    return analytics_cache.cached("summary", slot, days, lambda: orjson.dumps(analytics_summary(now)))


def data_query(
    *,
    sensor_ids: list[str],
    rooms: list[str],
    metrics: list[str],
    start: datetime,
    end: datetime,
    aggregation: str,
    interval: str,
    limit: int,
) -> Iterator[dict[str, Any]]:
    """Rows of readings (raw) or rollup aggregates for the sensors and rooms named, at most
    `limit`, read from the database in chunks as they are consumed (an export streams)."""
    scope = Q()
    if sensor_ids:
        scope |= Q(sensor__sensor_id__in=sensor_ids)
    if rooms:
        scope |= Q(sensor__room__name__in=rooms)
    if aggregation == "raw":
        queryset: QuerySet[Any] = Reading.objects.filter(scope, timestamp__gte=start, timestamp__lt=end)
        if metrics:
            queryset = queryset.filter(metric__in=metrics)
        for sensor_id, room, metric, ts, value, estimated in (
            queryset.order_by("timestamp", "sensor__sensor_id")
            .values_list(
                "sensor__sensor_id", "sensor__room__name", "metric", "timestamp", "value", "estimated"
            )[:limit]
            .iterator(chunk_size=CHUNK_ROWS)
        ):
            yield {
                "sensor_id": sensor_id,
                "room": room,
                "metric": metric,
                "timestamp": iso_z(ts),
                "value": value,
                "quality": "estimated" if estimated else "measured",
            }
        return
    field = {"avg": "mean", "sum": "sum", "min": "min", "max": "max", "count": "count"}[aggregation]
    queryset = Rollup.objects.filter(scope, resolution=interval, bucket__gte=start, bucket__lt=end)
    if metrics:
        queryset = queryset.filter(metric__in=metrics)
    for sensor_id, room, metric, bucket, value in (
        queryset.order_by("bucket", "sensor__sensor_id")
        .values_list("sensor__sensor_id", "sensor__room__name", "metric", "bucket", field)[:limit]
        .iterator(chunk_size=CHUNK_ROWS)
    ):
        yield {
            "sensor_id": sensor_id,
            "room": room,
            "metric": metric,
            "timestamp": iso_z(bucket),
            "value": value,
        }


def room_latest(room: Room) -> dict[str, Any]:
    """A room's latest 5-minute metrics and each of its sensors' latest reading."""
    window = RoomMetrics.objects.filter(room=room).order_by("-bucket").first()
    sensors = list(room.sensors.all())
    latest: dict[str, Any] = {}
    for sensor in sensors:
        reading = (
            Reading.objects.filter(sensor=sensor, metric=default_metric[sensor.kind])
            .order_by("-timestamp")
            .values_list("timestamp", "value")
            .first()
        )
        latest[sensor.sensor_id] = (
            {"metric": default_metric[sensor.kind], "timestamp": iso_z(reading[0]), "value": reading[1]}
            if reading
            else None
        )
    return {
        "metrics": (
            {
                "bucket": iso_z(window.bucket),
                "energy_kwh": window.energy_kwh,
                "power_w": window.power_w,
                "co2_ppm": window.co2_ppm,
                "temperature_c": window.temperature_c,
                "humidity_pct": window.humidity_pct,
                "occupancy": window.occupancy,
                "sensors_reporting": window.sensors_reporting,
            }
            if window
            else None
        ),
        "sensors": latest,
    }


# --- Reads other modules make ---------------------------------------------------------------


def power_latest(*, sensor_ids: Sequence[str]) -> dict[str, tuple[datetime, float]]:
    """Each sensor's newest power reading, whatever its age: sensor_id -> (timestamp, W).

    One query however many sensors (a correlated subquery per column, served by the readings'
    (sensor, metric, timestamp) index); sensors without a power reading are absent.
    """
    newest = Reading.objects.filter(sensor=OuterRef("pk"), metric=Metric.POWER).order_by("-timestamp")
    rows = (
        Sensor.objects.filter(sensor_id__in=list(sensor_ids))
        .annotate(
            latest_at=Subquery(newest.values("timestamp")[:1]),
            latest_value=Subquery(newest.values("value")[:1]),
        )
        .filter(latest_at__isnull=False)
        .values_list("sensor_id", "latest_at", "latest_value")
    )
    return {sensor_id: (moment, value) for sensor_id, moment, value in rows}


def load_kw_quarter_hours(
    *, sensor_ids: Sequence[str], start: datetime, end: datetime
) -> dict[str, dict[datetime, float]]:
    """Each sensor's average load in kW per 15-minute bucket starting in [start, end), from the
    quarter-hour rollups: the power mean (W / 1000) or, for a sensor with no power rollups in
    the range, its interval energy (kWh in 15 minutes x 4). Buckets without data are absent."""
    wanted = list(sensor_ids)
    rollups = Rollup.objects.filter(
        sensor__sensor_id__in=wanted,
        resolution=Rollup.Resolution.QUARTER_HOUR,
        bucket__gte=start,
        bucket__lt=end,
    )
    out: dict[str, dict[datetime, float]] = {sensor_id: {} for sensor_id in wanted}
    for sensor_id, bucket, mean in rollups.filter(metric=Metric.POWER).values_list(
        "sensor__sensor_id", "bucket", "mean"
    ):
        out[sensor_id][bucket] = mean / 1000.0
    without_power = [sensor_id for sensor_id, series in out.items() if not series]
    if without_power:
        for sensor_id, bucket, total in rollups.filter(
            metric=Metric.ENERGY, sensor__sensor_id__in=without_power
        ).values_list("sensor__sensor_id", "bucket", "sum"):
            out[sensor_id][bucket] = total * 4.0
    return out


# --- Comparisons and the meter breakdown (the overview) -------------------------------------

QUARTER = timedelta(minutes=15)
# The breakdown lists at most this many sub-meters under each meter (the largest first); the
# others are summed in one line, so a main meter with a thousand sub-meters stays readable.
BREAKDOWN_MAX_CHILDREN = 12
# ... and at most this many top-level meters without sub-meters, and hierarchies (the rest
# summed likewise).
BREAKDOWN_MAX_STANDALONE = 12
BREAKDOWN_MAX_TREES = 6
PERIODS = ("today", "week", "month")


def _floor_quarter(moment: datetime) -> datetime:
    return EPOCH + (moment - EPOCH) // QUARTER * QUARTER


def energy_by_sensor(start: datetime, end: datetime, *, prorate_end: bool = False) -> dict[int, float]:
    """Each sensor's kWh in [start, end) (`start` a local midnight), by primary key: the whole
    local days from the daily rollups, the rest from the quarter-hour rollups. The quarter
    hour that holds `end` counts whole, or (`prorate_end`) in proportion to the part of it
    before `end`: a past period cut at the time of day it is now counts as much of that
    quarter as has passed of the current one. Sensors without data are absent."""
    tz = building_tz()
    tail_start = max(start, local_day_bounds((end - timedelta(microseconds=1)).astimezone(tz).date())[0])
    totals: dict[int, float] = defaultdict(float)
    energy = Rollup.objects.filter(metric=Metric.ENERGY).values("sensor_id").order_by()

    def add(rows: QuerySet[Any], weight: float = 1.0) -> None:
        for row in rows.annotate(kwh=Sum("sum")):
            totals[row["sensor_id"]] += row["kwh"] * weight

    if tail_start > start:
        add(energy.filter(resolution=Rollup.Resolution.DAY, bucket__gte=start, bucket__lt=tail_start))
    quarters = energy.filter(resolution=Rollup.Resolution.QUARTER_HOUR, bucket__gte=tail_start)
    last = _floor_quarter(end)
    if prorate_end and last < end and last >= tail_start:
        add(quarters.filter(bucket__lt=last))
        add(quarters.filter(bucket=last), (end - last) / QUARTER)
    else:
        add(quarters.filter(bucket__lt=end))
    return dict(totals)


def _same_time(day: date, moment: datetime) -> datetime:
    """`day` at the local wall-clock time of `moment`, as an instant (a time the clocks skip
    that day is taken with the offset before the change)."""
    tz = building_tz()
    return datetime.combine(day, moment.astimezone(tz).timetz().replace(tzinfo=None), tzinfo=tz).astimezone(
        UTC
    )


def _month_start(year: int, month: int) -> date:
    return date(year, month, 1)


def _month_days(year: int, month: int) -> int:
    following = date(year + month // 12, month % 12 + 1, 1)
    return (following - date(year, month, 1)).days


def _building_kwh(
    tree: hierarchy.Meters, start: datetime, end: datetime, *, prorate_end: bool
) -> float | None:
    """The top-level meters' kWh in [start, end), None when no meter has data there."""
    per_sensor = energy_by_sensor(start, end, prorate_end=prorate_end)
    if not per_sensor:
        return None
    return tree.top_level_total(per_sensor.items())


def _period(start: datetime, end: datetime, kwh: float | None) -> dict[str, Any]:
    return {"start": local_iso(start), "end": local_iso(end), "energy_kwh": kwh}


def energy_comparison(now: datetime | None = None) -> dict[str, Any]:
    """The building's energy so far today, this week and this month against the same span of
    yesterday, of last week and of this month a year ago, each cut at the same local time of
    day (and weekday, or day of the month: the last day of a shorter month), in the building's
    time zone: a daylight-saving day is 23 or 25 hours and is compared up to the same clock
    time. The previous period's whole total is given too. Top-level meters only (a sub-meter's
    energy is in its parent's). `change_pct` is None when the previous span has no energy."""
    now = now or timezone.now()
    tz = building_tz()
    tree = hierarchy.meters()
    today = now.astimezone(tz).date()
    monday = today - timedelta(days=today.weekday())
    last_year = today.year - 1
    year_ago = _month_start(last_year, today.month)
    # Per period: its first day, the previous one's first day, the day the previous one is cut
    # at (at this time of day), and the day after the previous period (its whole total's end).
    spans = {
        "day": (today, today - timedelta(days=1), today - timedelta(days=1), today),
        "week": (monday, monday - timedelta(days=7), today - timedelta(days=7), monday),
        "month": (
            today.replace(day=1),
            year_ago,
            year_ago.replace(day=min(today.day, _month_days(last_year, today.month))),
            _month_start(last_year + today.month // 12, today.month % 12 + 1),
        ),
    }
    labels = {
        "day": ("Today", "Yesterday"),
        "week": ("This week", "Last week"),
        "month": ("This month", f"{today:%B} {last_year}"),
    }
    comparisons = []
    for name, (first, previous_first, previous_day, previous_after) in spans.items():
        start = local_day_bounds(first)[0]
        previous_start = local_day_bounds(previous_first)[0]
        previous_end = _same_time(previous_day, now)
        previous_whole_end = local_day_bounds(previous_after)[0]
        current = _building_kwh(tree, start, now, prorate_end=False)
        previous = _building_kwh(tree, previous_start, previous_end, prorate_end=True)
        whole = _building_kwh(tree, previous_start, previous_whole_end, prorate_end=False)
        change = None if current is None or previous is None else current - previous
        comparisons.append(
            {
                "period": name,
                "label": labels[name][0],
                "previous_label": labels[name][1],
                "current": _period(start, now, current),
                "previous": _period(previous_start, previous_end, previous),
                "previous_whole": _period(previous_start, previous_whole_end, whole),
                "change_kwh": change,
                "change_pct": (change / previous * 100.0) if change is not None and previous else None,
            }
        )
    return {"as_of": iso_z(now), "timezone": str(tz), "comparisons": comparisons}


def energy_comparison_json() -> bytes:
    """`energy_comparison` as JSON, computed at most once per ANALYTICS_SUMMARY_MAX_AGE seconds
    (and again as soon as the aggregates of a day it reads change), like the summary: every
    overview that loads asks for it."""
    now = timezone.now()
    max_age = settings.ANALYTICS_SUMMARY_MAX_AGE_S
    if max_age <= 0:
        return orjson.dumps(energy_comparison(now))
    tz = building_tz()
    today = now.astimezone(tz).date()
    first = min(today.replace(day=1), today - timedelta(days=today.weekday() + 7))
    year_ago = _month_start(today.year - 1, today.month)
    year_ago_end = _month_start(today.year - 1 + today.month // 12, today.month % 12 + 1)
    days = [
        *local_days(local_day_bounds(first)[0], now),
        *local_days(local_day_bounds(year_ago)[0], local_day_bounds(year_ago_end)[0]),
    ]
    slot = str(int(now.timestamp() // max_age))
    return analytics_cache.cached("comparison", slot, days, lambda: orjson.dumps(energy_comparison(now)))


def period_start(period: str, now: datetime) -> datetime:
    """The start of today, this week (Monday) or this month, local, as an instant."""
    today = now.astimezone(building_tz()).date()
    first = {
        "today": today,
        "week": today - timedelta(days=today.weekday()),
        "month": today.replace(day=1),
    }[period]
    return local_day_bounds(first)[0]


def _rest(nodes: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The line that sums the meters left out of a list."""
    if not nodes:
        return None
    return {"meters": len(nodes), "energy_kwh": sum(node["energy_kwh"] or 0.0 for node in nodes)}


def energy_breakdown(period: str = "today", now: datetime | None = None) -> dict[str, Any]:
    """Where the building's energy of a period (today, this week, this month; local) went.

    - `meters`: the largest BREAKDOWN_MAX_TREES meter hierarchies (a top-level meter with
      sub-meters; `meters_more` sums the others), every level with its
      kWh, its sub-meters (the largest BREAKDOWN_MAX_CHILDREN; `more` sums the others) and its
      `unmetered_kwh`: what it measured beyond its sub-meters (negative when they measured
      more: a meter missing data, or wired wrong; `unmetered_negative` says so);
    - `standalone`: the largest top-level meters without sub-meters (`more` sums the others);
    - `by_room`: each room's share (net of sub-meters: sensors.hierarchy, "unassigned" for
      meters in no room), `by_kind`: the top-level meters' kWh per kind;
    - `total_kwh`: the top-level meters' kWh, which the rooms' shares add up to.
    A nested meter is counted once everywhere.
    """
    now = now or timezone.now()
    start = period_start(period, now)
    tree = hierarchy.meters()
    per_sensor = energy_by_sensor(start, now)
    registry = {
        pk: (sensor_id, name, kind, room)
        for pk, sensor_id, name, kind, room in Sensor.objects.filter(
            pk__in=set(per_sensor) | set(tree.parent)
        ).values_list("pk", "sensor_id", "name", "kind", "room__name")
    }
    children: dict[int, list[int]] = defaultdict(list)
    for pk, parent in tree.parent.items():
        if parent is not None:
            children[parent].append(pk)
    # Meters with data, and every ancestor of one (a parent without data of its own still
    # shows its sub-meters).
    shown: set[int] = set()
    for pk in per_sensor:
        node: int | None = pk
        for _ in range(MAX_METER_DEPTH):
            if node is None or node in shown:
                break
            shown.add(node)
            node = tree.parent.get(node)

    def build(pk: int, level: int) -> dict[str, Any]:
        sensor_id, name, kind, room = registry[pk]
        kwh = per_sensor.get(pk)
        subs = [
            build(child, level + 1) for child in children.get(pk, []) if child in shown and child in registry
        ]
        subs.sort(key=lambda n: n["energy_kwh"] or 0.0, reverse=True)
        node: dict[str, Any] = {
            "sensor_id": sensor_id,
            "name": name or sensor_id,
            "kind": kind,
            "room": room,
            "level": level,
            "energy_kwh": kwh,
        }
        if subs:
            metered = sum(sub["energy_kwh"] or 0.0 for sub in subs)
            unmetered = None if kwh is None else kwh - metered
            node.update(
                sub_meters=subs[:BREAKDOWN_MAX_CHILDREN],
                more=_rest(subs[BREAKDOWN_MAX_CHILDREN:]),
                sub_metered_kwh=metered,
                unmetered_kwh=unmetered,
                unmetered_negative=unmetered is not None and unmetered < -1e-9,
            )
        return node

    # Sensors of other kinds with energy data are top-level too (sensors.hierarchy); a sensor
    # deleted since the rollups were read is left out.
    trees = [build(pk, 1) for pk in shown if tree.is_top_level(pk) and pk in registry]
    trees.sort(key=lambda n: n["energy_kwh"] or 0.0, reverse=True)
    with_subs = [node for node in trees if "sub_meters" in node]
    standalone = [node for node in trees if "sub_meters" not in node]
    rows = [(pk, registry[pk][3], kwh) for pk, kwh in per_sensor.items() if pk in registry]
    by_room = sorted(tree.shares(rows).items(), key=lambda kv: kv[1], reverse=True)
    by_kind: dict[str, float] = defaultdict(float)
    for pk, _, kwh in rows:
        if tree.is_top_level(pk):
            by_kind[registry[pk][2]] += kwh
    return {
        "period": period,
        "start": local_iso(start),
        "end": local_iso(now),
        "timezone": str(building_tz()),
        "total_kwh": tree.top_level_total((pk, kwh) for pk, _, kwh in rows) if rows else None,
        "meters": with_subs[:BREAKDOWN_MAX_TREES],
        "meters_more": _rest(with_subs[BREAKDOWN_MAX_TREES:]),
        "standalone": standalone[:BREAKDOWN_MAX_STANDALONE],
        "standalone_more": _rest(standalone[BREAKDOWN_MAX_STANDALONE:]),
        "by_room": [{"room": room, "energy_kwh": kwh} for room, kwh in by_room],
        "by_kind": dict(sorted(by_kind.items(), key=lambda kv: kv[1], reverse=True)),
    }


# --- A room's series (the room page) --------------------------------------------------------

ROOM_RESOLUTIONS = ("raw", "5m", "15m", "1h", "1d")
# The metrics a room's series shows, in the page's order.
ROOM_METRICS = (
    Metric.POWER,
    Metric.ENERGY,
    Metric.CO2,
    Metric.TEMPERATURE,
    Metric.HUMIDITY,
    Metric.OCCUPANCY,
)
# At most this many points (all series together) in one answer: a chart draws a few thousand
# points per series well, hundreds of thousands not at all. Past it the API answers 400.
ROOM_SERIES_MAX_POINTS = 20_000
# `resolution=auto`: raw readings for ranges up to this long (when they fit the limit), else
# the finest rollup with at most AUTO_MAX_BUCKETS buckets (a day at 5 minutes, a week at 15,
# a month at an hour, a year at a day).
AUTO_RAW_SPAN = timedelta(hours=6)
AUTO_MAX_BUCKETS = 800
# How a room's rollup bucket combines its sensors' buckets of one metric: energy is the sum of
# their kWh, power and occupancy the sum of their means, the climate metrics the mean of means
# (as the 5-minute room metrics do).
_ROOM_SUM_OF_MEANS = {Metric.POWER, Metric.OCCUPANCY}
_ROOM_WINDOW_FIELDS = {
    Metric.ENERGY: "energy_kwh",
    Metric.POWER: "power_w",
    Metric.CO2: "co2_ppm",
    Metric.TEMPERATURE: "temperature_c",
    Metric.HUMIDITY: "humidity_pct",
    Metric.OCCUPANCY: "occupancy",
}


class TooManyPoints(ValueError):
    """A room series past ROOM_SERIES_MAX_POINTS."""


def room_series_buckets(start: datetime, end: datetime, resolution: str) -> int:
    """How many `resolution` buckets [start, end) touches (arithmetic only, as bucket_count)."""
    if resolution == "5m":
        step = timedelta(seconds=300)
        return -((EPOCH - end) // step) - (start - EPOCH) // step
    return bucket_count(start, end, resolution)


def room_series_resolution(start: datetime, end: datetime) -> str:
    """The resolution `auto` takes for [start, end) before counting raw points: see AUTO_*."""
    if end - start <= AUTO_RAW_SPAN:
        return "raw"
    for resolution in ("5m", "15m", "1h"):
        if room_series_buckets(start, end, resolution) <= AUTO_MAX_BUCKETS:
            return resolution
    return "1d"


def _points_check(points: int, resolution: str) -> None:
    if points > ROOM_SERIES_MAX_POINTS:
        raise TooManyPoints(
            f"at most {ROOM_SERIES_MAX_POINTS} points per answer (ROOM_SERIES_MAX_POINTS); "
            f"this range at {resolution} has more: shorten it or take a coarser resolution."
        )


def _room_raw(
    sensors: dict[int, str], metrics: list[str], start: datetime, end: datetime
) -> dict[tuple[str, str | None], list[tuple[datetime, float]]]:
    """Each sensor's raw readings of each metric (a series per sensor: readings of several
    sensors at different instants do not add up point by point)."""
    rows = list(
        Reading.objects.filter(
            sensor_id__in=list(sensors), metric__in=metrics, timestamp__gte=start, timestamp__lt=end
        )
        .order_by("metric", "sensor_id", "timestamp")
        .values_list("metric", "sensor_id", "timestamp", "value")[: ROOM_SERIES_MAX_POINTS + 1]
    )
    _points_check(len(rows), "raw")
    series: dict[tuple[str, str | None], list[tuple[datetime, float]]] = defaultdict(list)
    for metric, pk, moment, value in rows:
        series[(metric, sensors[pk])].append((moment, value))
    return series


def _room_windows(
    room: Room, metrics: list[str], start: datetime, end: datetime
) -> dict[tuple[str, str | None], list[tuple[datetime, float]]]:
    """The room's 5-minute room metrics, one series per metric."""
    fields = [_ROOM_WINDOW_FIELDS[Metric(m)] for m in metrics]
    series: dict[tuple[str, str | None], list[tuple[datetime, float]]] = defaultdict(list)
    for bucket, *values in (
        RoomMetrics.objects.filter(room=room, bucket__gte=start, bucket__lt=end)
        .order_by("bucket")
        .values_list("bucket", *fields)
    ):
        for metric, value in zip(metrics, values, strict=True):
            if value is not None:
                series[(metric, None)].append((bucket, value))
    return series


def _room_rollups(
    sensors: dict[int, str], metrics: list[str], resolution: str, start: datetime, end: datetime
) -> dict[tuple[str, str | None], list[tuple[datetime, float]]]:
    """The room's sensors' rollups, combined per metric and bucket (see _ROOM_SUM_OF_MEANS)."""
    rows = (
        Rollup.objects.filter(
            sensor_id__in=list(sensors),
            metric__in=metrics,
            resolution=resolution,
            bucket__gte=start,
            bucket__lt=end,
        )
        .values("metric", "bucket")
        .annotate(total=Sum("sum"), means=Sum("mean"), mean=Avg("mean"))
        .order_by("metric", "bucket")
    )
    # Energy and power net of sub-meters (sensors.hierarchy), as the room metrics are: the
    # readings of a sub-meter of one of the room's meters are taken off again, so a nested
    # meter in the room is not counted twice and one elsewhere counts in its own room only.
    nested = [m for m in metrics if m in (Metric.ENERGY, Metric.POWER)]
    taken_off: dict[tuple[str, datetime], float] = defaultdict(float)
    if nested:
        for row in (
            Rollup.objects.filter(
                sensor__part_of_id__in=list(sensors),
                metric__in=nested,
                resolution=resolution,
                bucket__gte=start,
                bucket__lt=end,
            )
            .values("metric", "bucket")
            .annotate(total=Sum("sum"), means=Sum("mean"))
            .order_by()
        ):
            taken_off[(row["metric"], as_datetime(row["bucket"]))] += (
                row["total"] if row["metric"] == Metric.ENERGY else row["means"]
            )
    series: dict[tuple[str, str | None], list[tuple[datetime, float]]] = defaultdict(list)
    for row in rows:
        metric = row["metric"]
        bucket = as_datetime(row["bucket"])
        if metric == Metric.ENERGY:
            value = row["total"] - taken_off.get((metric, bucket), 0.0)
        elif metric in _ROOM_SUM_OF_MEANS:
            value = row["means"] - taken_off.get((metric, bucket), 0.0)
        else:
            value = row["mean"]
        series[(metric, None)].append((bucket, value))
    return series


def room_series(
    *, room: Room, metrics: Sequence[str], start: datetime, end: datetime, resolution: str
) -> dict[str, Any]:
    """A room's points per metric in [start, end) at `resolution` (`auto`: see AUTO_*), with
    local timestamps and their offset; raises TooManyPoints past ROOM_SERIES_MAX_POINTS.

    raw: each of the room's sensors' readings, a series per sensor and metric; 5m: the room's
    5-minute room metrics (the sensors it held when each window was computed); 15m, 1h, 1d (a
    local day, 23 or 25 hours on daylight-saving days): its current sensors' rollups combined,
    a series per metric. Rollups and room metrics are as fresh as the room-metrics job (every
    5 minutes); raw readings are there as soon as they are stored.
    """
    wanted = [str(m) for m in ROOM_METRICS if m in metrics]
    sensors = dict(Sensor.objects.filter(room=room).values_list("pk", "sensor_id"))
    chosen = resolution
    if resolution == "auto":
        chosen = room_series_resolution(start, end)
    series: dict[tuple[str, str | None], list[tuple[datetime, float]]]
    if chosen == "raw":
        try:
            series = _room_raw(sensors, wanted, start, end)
        except TooManyPoints:
            if resolution != "auto":
                raise
            chosen = "5m" if room_series_buckets(start, end, "5m") <= AUTO_MAX_BUCKETS else "15m"
    if chosen != "raw":
        _points_check(room_series_buckets(start, end, chosen) * len(wanted), chosen)
        if chosen == "5m":
            series = _room_windows(room, wanted, start, end)
        else:
            series = _room_rollups(sensors, wanted, chosen, start, end)
    out = []
    for metric in wanted:
        keys = sorted(key for key in series if key[0] == metric) or [(metric, None)]
        for key in keys:
            out.append(
                {
                    "metric": str(metric),
                    "sensor_id": key[1],
                    "points": [[local_iso(at), value] for at, value in series.get(key, [])],
                }
            )
    return {
        "room": room.name,
        "timezone": settings.TIME_ZONE,
        "start": local_iso(start),
        "end": local_iso(end),
        "resolution": chosen,
        "requested_resolution": resolution,
        "max_points": ROOM_SERIES_MAX_POINTS,
        "series": out,
    }


# --- The sensors' latest values (the room and sensors pages) ---------------------------------

# The order of the sensors page: those that need a look first.
_STATUS_ORDER = (Sensor.Status.FAULT, Sensor.Status.STALE, Sensor.Status.ACTIVE, Sensor.Status.INACTIVE)


def sensors_latest(sensors: Iterable[tuple[int, str]]) -> dict[int, tuple[datetime, float]]:
    """Each sensor's newest reading of its kind's metric: pk -> (timestamp, value), for
    (pk, kind) pairs. One query per kind (a correlated subquery served by the readings'
    (sensor, metric, timestamp) key), whatever the number of sensors."""
    by_kind: dict[str, list[int]] = defaultdict(list)
    for pk, kind in sensors:
        by_kind[kind].append(pk)
    out: dict[int, tuple[datetime, float]] = {}
    for kind, pks in by_kind.items():
        newest = Reading.objects.filter(sensor=OuterRef("pk"), metric=default_metric[kind]).order_by(
            "-timestamp"
        )
        rows = (
            Sensor.objects.filter(pk__in=pks)
            .annotate(
                latest_at=Subquery(newest.values("timestamp")[:1]),
                latest_value=Subquery(newest.values("value")[:1]),
            )
            .filter(latest_at__isnull=False)
            .values_list("pk", "latest_at", "latest_value")
        )
        out.update({pk: (as_datetime(moment), value) for pk, moment, value in rows})
    return out


def _sensor_rows(sensors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    latest = sensors_latest((s["pk"], s["kind"]) for s in sensors)
    rows = []
    for sensor in sensors:
        found = latest.get(sensor["pk"])
        rows.append(
            {
                "sensor_id": sensor["sensor_id"],
                "name": sensor["name"],
                "kind": sensor["kind"],
                "kind_label": Sensor.Kind(sensor["kind"]).label,
                "room": sensor["room__name"],
                "status": sensor["status"],
                "status_label": Sensor.Status(sensor["status"]).label,
                "last_seen": sensor["last_seen"],
                "metric": str(default_metric[sensor["kind"]]),
                "last_value": found[1] if found else None,
                "last_value_at": found[0] if found else None,
            }
        )
    return rows


_SENSOR_FIELDS = ("pk", "sensor_id", "name", "kind", "room__name", "status", "last_seen")


def room_detail(name: str) -> dict[str, Any] | None:
    """A room's descriptive fields and its sensors with status, last seen and latest value (None
    when no room has that name)."""
    room = Room.objects.filter(name=name).first()
    if room is None:
        return None
    sensors = list(Sensor.objects.filter(room=room).order_by("sensor_id").values(*_SENSOR_FIELDS))
    return {
        "name": room.name,
        "display_name": room.display_name or room.name,
        "floor": room.floor,
        "area_m2": room.area_m2,
        "capacity": room.capacity,
        "sensors": _sensor_rows(sensors),
    }


def sensors_table(*, filters: Any, offset: int, limit: int) -> dict[str, Any]:
    """A page of the sensor registry, filtered as the API's list is (`filters`: a QueryDict or
    mapping of sensors.filters.SensorFilter's parameters), faulty and stale sensors first:
    {"count", "rows", "errors"} (errors: the filters that could not be read, which are ignored)."""
    ranked = Sensor.objects.annotate(
        status_rank=Case(
            *(When(status=status, then=Value(rank)) for rank, status in enumerate(_STATUS_ORDER)),
            default=Value(len(_STATUS_ORDER)),
            output_field=IntegerField(),
        )
    )
    found = SensorFilter(data=filters, queryset=ranked)
    errors = {} if found.is_valid() else {field: list(msgs) for field, msgs in found.errors.items()}
    queryset = found.qs if not errors else ranked
    queryset = queryset.order_by("status_rank", "sensor_id")
    count = queryset.count()
    sensors = list(queryset.values(*_SENSOR_FIELDS)[offset : offset + limit])
    return {"count": count, "rows": _sensor_rows(sensors), "errors": errors}


# --- The overview's live figures --------------------------------------------------------------

# The overview's chart of the building's power: this far back, in windows of this length
# (the sum over top-level meters of each one's mean in the window, as the room metrics do).
RECENT_POWER = timedelta(hours=1)
RECENT_POWER_STEP_S = 300
# The metrics the overview keeps live, and the kinds of sensor that report each.
LIVE_KINDS = {
    Metric.POWER: (Sensor.Kind.POWER, Sensor.Kind.ENERGY_METER),
    Metric.CO2: (Sensor.Kind.CO2,),
    Metric.TEMPERATURE: (Sensor.Kind.TEMPERATURE,),
    Metric.HUMIDITY: (Sensor.Kind.HUMIDITY,),
}


def meter_parents() -> dict[str, dict[str, str | None]]:
    """Each sub-meter's parent: sensor_id -> {part_of: the parent's sensor_id, parent_room: its
    room's name}. What a page needs to net live power of sub-meters out (sensors.hierarchy)."""
    return {
        sensor_id: {"part_of": parent, "parent_room": parent_room}
        for sensor_id, parent, parent_room in Sensor.objects.filter(part_of__isnull=False).values_list(
            "sensor_id", "part_of__sensor_id", "part_of__room__name"
        )
    }


def overview_live(now: datetime | None = None) -> dict[str, Any]:
    """What the overview's live parts start from.

    - `recent`: the building's power over the last RECENT_POWER, [UTC time, W] per quarter
      hour the rollups hold, then per RECENT_POWER_STEP_S window of raw readings (top-level
      meters only), oldest first;
    - `latest`: each sensor's newest power, CO2, temperature and humidity reading of the last
      CURRENT_WINDOW, as [sensor_id, room, metric, UTC time, value] (the page keeps them
      current from the live feed).
    A grouped query and one index lookup per sensor and metric.
    """
    now = now or timezone.now()
    connection = connections[DB]
    adapt = connection.ops.adapt_datetimefield_value
    reading, sensor = Reading._meta.db_table, Sensor._meta.db_table
    top_level = f"r.sensor_id NOT IN (SELECT id FROM {sensor} WHERE part_of_id IS NOT NULL)"  # noqa: S608 (our identifiers)
    # The hour's quarter hours that the rollups hold already (the 5-minute job lags the feed):
    # the sum of the top-level meters' means per quarter hour; raw readings only after the
    # newest of them, in RECENT_POWER_STEP_S windows. Reading the whole hour raw took seconds
    # at 1,000 readings/s.
    since = now - RECENT_POWER
    quarters = list(
        _streamed(
            f"SELECT r.bucket, sum(r.mean) FROM {Rollup._meta.db_table} r WHERE r.metric = %s "  # noqa: S608 (our identifiers; values are parameters)
            f"AND r.resolution = %s AND r.bucket >= %s AND r.bucket < %s AND {top_level} "
            "GROUP BY r.bucket ORDER BY r.bucket",
            [
                Metric.POWER.value,
                Rollup.Resolution.QUARTER_HOUR.value,
                adapt(since),
                adapt(_floor_quarter(now)),
            ],
            stream=False,
        )
    )
    # The newest quarter may still be filling (rollups are recomputed as readings arrive): it
    # is read raw again, like everything after it.
    quarters = quarters[:-1]
    raw_since = as_datetime(quarters[-1][0]) + QUARTER if quarters else since
    window = bucket_sql(connection.vendor, "r.timestamp", RECENT_POWER_STEP_S)
    raw = _streamed(
        f"SELECT b, sum(mean) FROM (SELECT r.sensor_id, {window} AS b, avg(r.value) AS mean "  # noqa: S608 (our identifiers; values are parameters)
        f"FROM {reading} r WHERE r.metric = %s AND r.timestamp >= %s AND r.timestamp <= %s AND {top_level} "
        "GROUP BY 1, 2) per_sensor GROUP BY b ORDER BY b",
        [Metric.POWER.value, adapt(raw_since), adapt(now)],
        stream=False,
    )
    recent = [*quarters, *raw]
    # Each sensor's newest reading of each metric its kind reports, by the readings' primary
    # key (sensor, metric, timestamp): one index lookup per sensor, however many readings the
    # window holds (grouping the window's readings took a second at 1,000 readings/s).
    latest: list[tuple[str, str | None, str, datetime, float]] = []
    for metric, kinds in LIVE_KINDS.items():
        newest = Reading.objects.filter(sensor=OuterRef("pk"), metric=metric).order_by("-timestamp")
        rows = (
            Sensor.objects.filter(kind__in=kinds)
            .annotate(
                latest_at=Subquery(newest.values("timestamp")[:1]),
                latest_value=Subquery(newest.values("value")[:1]),
            )
            .filter(latest_at__gte=now - CURRENT_WINDOW, latest_at__lte=now)
            .values_list("sensor_id", "room__name", "latest_at", "latest_value")
        )
        latest.extend((sensor_id, room, metric, at, value) for sensor_id, room, at, value in rows)
    latest.sort(key=lambda row: (row[0], row[2]))
    return {
        "as_of": iso_z(now),
        "step_s": RECENT_POWER_STEP_S,
        "recent": [[iso_z(as_datetime(moment)), watts] for moment, watts in recent],
        "latest": [
            [sensor_id, room, str(metric), iso_z(as_datetime(moment)), value]
            for sensor_id, room, metric, moment, value in latest
        ],
    }
