"""The one way readings enter: validation, units, counters, de-duplication, bulk write.

Internal to the sensors module; callers use `sensors.services.readings_ingest`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypedDict

from django.conf import settings
from django.db import connections
from django.utils import timezone

from sensors.aggregation import MARK_WINDOW_S, bucket_sql
from sensors.models import CounterState, DirtyBucket, Metric, Reading, Sensor

DB = "sensors"
FUTURE_SKEW = timedelta(minutes=5)

# Canonical unit per metric, the units accepted for it and the factor to the canonical one.
UNITS: dict[str, dict[str, Any]] = {
    Metric.ENERGY: {"kwh": 1.0, "wh": 1e-3, "mwh": 1e3},
    Metric.POWER: {"w": 1.0, "kw": 1e3, "mw": 1e6},
    Metric.CO2: {"ppm": 1.0},
    Metric.TEMPERATURE: {"c": None, "°c": None, "degc": None, "f": None, "°f": None, "k": None},
    Metric.HUMIDITY: {"%": 1.0, "pct": 1.0, "percent": 1.0, "%rh": 1.0},
    Metric.OCCUPANCY: {"people": 1.0, "count": 1.0, "": 1.0},
}
DEFAULT_UNIT = {
    Metric.ENERGY: "kwh",
    Metric.POWER: "w",
    Metric.CO2: "ppm",
    Metric.TEMPERATURE: "c",
    Metric.HUMIDITY: "%",
    Metric.OCCUPANCY: "",
}
# Physical ranges in canonical units; outside is a broken sensor or a unit mistake.
RANGES: dict[str, tuple[float, float]] = {
    Metric.ENERGY: (0.0, 1e6),
    Metric.POWER: (-1e8, 1e8),
    Metric.CO2: (0.0, 40_000.0),
    Metric.TEMPERATURE: (-60.0, 120.0),
    Metric.HUMIDITY: (0.0, 100.0),
    Metric.OCCUPANCY: (0.0, 100_000.0),
}
# A cumulative energy register (kWh) sent as this metric becomes interval `energy`.
COUNTER_METRIC = "energy_total"
# A counter step implying more than this average power is a spike, not consumption.
MAX_COUNTER_POWER_KW = 100_000.0


class Rejection(TypedDict):
    """One refused point and why."""

    index: int
    reason: str


class IngestResult(TypedDict):
    """What happened to a batch."""

    accepted: int
    duplicates: int
    conflicts: int
    rejected: list[Rejection]


@dataclass(slots=True)
class Point:
    """A validated point in canonical units, ready to store."""

    index: int
    sensor: Sensor
    metric: str
    timestamp: datetime
    value: float
    estimated: bool


@dataclass
class Batch:
    """The outcome of validation: points to store and what was refused."""

    points: list[Point] = field(default_factory=list)
    counters: list[Point] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)


class PointError(ValueError):
    """A point that cannot be taken, with the reason shown to the client."""


def parse_timestamp(raw: Any, now: datetime) -> datetime:
    """An aware UTC datetime from ISO 8601 with an offset, or epoch seconds/milliseconds."""
    if isinstance(raw, bool):
        raise PointError("timestamp must be ISO 8601 with an offset, or epoch seconds")
    if isinstance(raw, int | float):
        if not math.isfinite(raw):
            raise PointError("timestamp is not a finite number")
        seconds = raw / 1000.0 if abs(raw) > 1e11 else float(raw)  # milliseconds
        try:
            moment = datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise PointError("timestamp is out of range") from None
    elif isinstance(raw, str):
        try:
            moment = datetime.fromisoformat(raw.strip().replace("z", "Z"))
        except ValueError:
            raise PointError(f"timestamp {raw[:40]!r} is not ISO 8601") from None
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise PointError("timestamp has no UTC offset (add Z or +hh:mm)")
        moment = moment.astimezone(UTC)
    else:
        raise PointError("timestamp must be ISO 8601 with an offset, or epoch seconds")
    if moment > now + FUTURE_SKEW:
        raise PointError(f"timestamp {moment:%Y-%m-%dT%H:%M:%SZ} is in the future")
    if moment.year < 1971:
        raise PointError("timestamp is before 1971")
    return moment


def convert(metric: str, value: float, unit: str | None) -> float:
    """`value` in `unit` as the metric's canonical unit; PointError for an unknown unit."""
    key = (unit if unit is not None else DEFAULT_UNIT[metric]).strip().lower()
    accepted = UNITS[metric]
    if key not in accepted:
        raise PointError(f"unit {unit!r} is not one of {sorted(u for u in accepted if u)} for {metric}")
    if metric == Metric.TEMPERATURE:
        if key in ("f", "°f"):
            return (value - 32.0) * 5.0 / 9.0
        if key == "k":
            return value - 273.15
        return value
    return value * accepted[key]


def validate(
    items: Sequence[Any], sensors: Mapping[str, Sensor], *, default_sensor: str | None = None
) -> Batch:
    """Check each item; return the good points in canonical units and the reasons for the rest."""
    now = timezone.now()
    batch = Batch()
    metrics = set(Metric.values)
    for index, item in enumerate(items):
        try:
            if not isinstance(item, dict):
                raise PointError("each reading must be an object")
            sensor_id = item.get("sensor_id", default_sensor)
            if default_sensor is not None and sensor_id != default_sensor:
                raise PointError(f"sensor_id {sensor_id!r} differs from the URL's {default_sensor!r}")
            if not isinstance(sensor_id, str) or not sensor_id:
                raise PointError("sensor_id is missing")
            sensor = sensors.get(sensor_id)
            if sensor is None:
                raise PointError(f"unknown sensor {sensor_id!r}")
            metric = item.get("metric")
            if metric != COUNTER_METRIC and metric not in metrics:
                raise PointError(f"metric {metric!r} is not one of {sorted([*metrics, COUNTER_METRIC])}")
            raw = item.get("value")
            if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
                raise PointError("value must be a finite number")
            timestamp = parse_timestamp(item.get("timestamp"), now)
            unit = item.get("unit")
            if unit is not None and not isinstance(unit, str):
                raise PointError("unit must be a string")
            quality = item.get("quality", "measured")
            if quality not in ("measured", "estimated"):
                raise PointError("quality must be 'measured' or 'estimated'")
            if metric == COUNTER_METRIC:
                value = convert(Metric.ENERGY, float(raw), unit)
                if value < 0:
                    raise PointError("an energy counter cannot be negative")
                batch.counters.append(
                    Point(index, sensor, Metric.ENERGY, timestamp, value, quality == "estimated")
                )
                continue
            value = convert(metric, float(raw), unit)
            low, high = RANGES[metric]
            if not low <= value <= high:
                raise PointError(f"{metric} {value:g} is outside the physical range {low:g}..{high:g}")
            batch.points.append(Point(index, sensor, metric, timestamp, value, quality == "estimated"))
        except PointError as exc:
            batch.rejected.append({"index": index, "reason": str(exc)})
    return batch


def counters_to_intervals(counters: list[Point], rejected: list[Rejection]) -> tuple[list[Point], int, int]:
    """Interval energy from cumulative registers, against each sensor's last stored value.

    A register that goes down is a rollover when it was near the top of its decimal range
    (999 999 -> 12 continues at 1 000 012), otherwise a meter reset (the new value is the
    energy since the reset). A step implying more than MAX_COUNTER_POWER_KW is a spike:
    refused, and the register is re-based so the next step is measured from it.
    Runs inside the ingest transaction; the states are locked on PostgreSQL. Returns the
    interval points, how many register values only set a sensor's base, and how many were
    repeats of the last stored register value.
    """
    bases = repeats = 0
    by_sensor: dict[int, list[Point]] = defaultdict(list)
    for point in counters:
        by_sensor[point.sensor.pk].append(point)
    states = {
        s.sensor_id: s for s in CounterState.objects.select_for_update().filter(sensor_id__in=list(by_sensor))
    }
    intervals: list[Point] = []
    changed: list[CounterState] = []
    created: list[CounterState] = []
    for sensor_pk, points in by_sensor.items():
        points.sort(key=lambda p: p.timestamp)
        state = states.get(sensor_pk)
        for point in points:
            if state is None:
                state = CounterState(sensor_id=sensor_pk, timestamp=point.timestamp, value=point.value)
                created.append(state)
                bases += 1  # the first register value only sets the base
                continue
            if point.timestamp <= state.timestamp:
                if point.timestamp == state.timestamp and point.value == state.value:
                    repeats += 1  # the same register reading again
                    continue
                rejected.append(
                    {"index": point.index, "reason": "counter reading is not newer than the last one"}
                )
                continue
            delta = point.value - state.value
            if delta < 0:
                top = 10 ** math.ceil(math.log10(state.value + 1))
                delta = (top - state.value) + point.value if state.value >= 0.9 * top else point.value
            hours = (point.timestamp - state.timestamp).total_seconds() / 3600.0
            if delta / hours > MAX_COUNTER_POWER_KW:
                rejected.append(
                    {"index": point.index, "reason": f"counter jumped {delta:g} kWh in {hours:g} h"}
                )
            else:
                intervals.append(
                    Point(point.index, point.sensor, Metric.ENERGY, point.timestamp, delta, point.estimated)
                )
            state.timestamp, state.value = point.timestamp, point.value
            if state not in created and state not in changed:
                changed.append(state)
    CounterState.objects.bulk_create(created)
    CounterState.objects.bulk_update(changed, ["timestamp", "value"])
    return intervals, bases, repeats


def dedupe(points: list[Point]) -> tuple[list[Point], int, int]:
    """Drop repeats inside the batch: the first wins; a repeat with another value is a conflict."""
    seen: dict[tuple[int, str, datetime], float] = {}
    unique: list[Point] = []
    duplicates = conflicts = 0
    for point in points:
        key = (point.sensor.pk, point.metric, point.timestamp)
        if key in seen:
            if seen[key] == point.value:
                duplicates += 1
            else:
                conflicts += 1
            continue
        seen[key] = point.value
        unique.append(point)
    return unique, duplicates, conflicts


# A stored reading as the database returned it: (sensor pk, metric, timestamp, value, estimated).
Row = tuple[int, str, datetime, float, bool]


@dataclass
class Written:
    """What the bulk write stored."""

    inserted: list[Row]
    conflicts: int


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def write(points: list[Point]) -> Written:
    """Insert new points in bulk; existing points are kept and differing values counted.

    Rows go to a temporary staging table (COPY on PostgreSQL, one executemany on SQLite),
    then one INSERT ... SELECT ... ON CONFLICT DO NOTHING RETURNING moves the new ones.
    """
    connection = connections[DB]
    reading = Reading._meta.db_table
    staging = "sensors_staging"
    vendor = connection.vendor
    if not points:
        return Written([], 0)
    with connection.cursor() as cursor:
        if vendor == "postgresql":
            cursor.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS {staging} (sensor_id bigint, metric varchar(16), "
                "timestamp timestamptz, value double precision, estimated boolean) ON COMMIT DELETE ROWS"
            )
            # Emptied by each commit, but a caller's outer transaction may hold several batches.
            cursor.execute(f"DELETE FROM {staging}")

            # COPY's text format built in one buffer: one write instead of one per row.
            # Metrics come from our own vocabulary and timestamps are ISO 8601, so nothing
            # needs escaping; repr() of a float round-trips exactly.
            with cursor.copy(
                f"COPY {staging} (sensor_id, metric, timestamp, value, estimated) FROM STDIN"
            ) as copy:
                copy.write(
                    "".join(
                        f"{p.sensor.pk}\t{p.metric}\t{p.timestamp.isoformat()}\t{p.value!r}\t"
                        f"{'t' if p.estimated else 'f'}\n"
                        for p in points
                    )
                )

        else:
            adapt = connection.ops.adapt_datetimefield_value
            cursor.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS {staging} (sensor_id integer, metric text, "
                "timestamp text, value real, estimated bool)"
            )
            cursor.execute(f"DELETE FROM {staging}")
            cursor.executemany(
                f"INSERT INTO {staging} (sensor_id, metric, timestamp, value, estimated) "
                "VALUES (%s, %s, %s, %s, %s)",
                [(p.sensor.pk, p.metric, adapt(p.timestamp), p.value, p.estimated) for p in points],
            )
        # WHERE true: SQLite needs it to tell the upsert's ON from a join's. RETURNING gives the
        # keys of the rows this statement inserted (not those a concurrent writer stored first);
        # as microseconds on PostgreSQL and as the stored text on SQLite, which map back to the
        # points without parsing a datetime per row.
        returned = (
            "(extract(epoch from timestamp) * 1000000)::bigint" if vendor == "postgresql" else "timestamp"
        )
        cursor.execute(
            f"INSERT INTO {reading} (sensor_id, metric, timestamp, value, estimated) "
            f"SELECT sensor_id, metric, timestamp, value, estimated FROM {staging} WHERE true "
            "ON CONFLICT (sensor_id, metric, timestamp) DO NOTHING "
            f"RETURNING sensor_id, metric, {returned}"
        )
        rows = cursor.fetchall()
        if rows:
            # Mark the hours (MARK_WINDOW_S) for the aggregation job, in the same transaction and
            # without shipping the rows back: staged repeats mark a window twice, which only
            # costs the job a recomputation it does anyway.
            bucket = bucket_sql(vendor, "timestamp", MARK_WINDOW_S)
            cursor.execute(
                f"INSERT INTO {DirtyBucket._meta.db_table} (sensor_id, metric, bucket) "
                f"SELECT DISTINCT sensor_id, metric, {bucket} FROM {staging} WHERE true",
                [],
            )
        cursor.execute(
            f"SELECT count(*) FROM {staging} s JOIN {reading} r ON r.sensor_id = s.sensor_id "
            "AND r.metric = s.metric AND r.timestamp = s.timestamp WHERE r.value <> s.value"
        )
        conflicts = int(cursor.fetchone()[0])
        cursor.execute(f"DELETE FROM {staging}")
    if vendor == "postgresql":
        by_key = {(p.sensor.pk, p.metric, _micros(p.timestamp)): p for p in points}
    else:
        # SQLite returns the stored text, parsed by Django's converter into a naive UTC datetime.
        by_key = {(p.sensor.pk, p.metric, p.timestamp.replace(tzinfo=None)): p for p in points}
        rows = [
            (r[0], r[1], r[2] if isinstance(r[2], datetime) else datetime.fromisoformat(r[2])) for r in rows
        ]
    inserted = [
        (point.sensor.pk, point.metric, point.timestamp, point.value, point.estimated)
        for point in (by_key[(r[0], r[1], r[2])] for r in rows)
    ]

    return Written(inserted, conflicts)


def _micros(moment: datetime) -> int:
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def touch_sensors(sensors: Mapping[int, Sensor], inserted: Sequence[Row]) -> list[Sensor]:
    """Move each sensor's last_seen forward; stale sensors with fresh data become active again.

    Meant to run last in the ingest transaction, so the sensors' rows stay locked only for
    the commit. Returns the sensors that recovered.
    """
    latest: dict[int, datetime] = {}
    for row in inserted:
        if row[0] not in latest or row[2] > latest[row[0]]:
            latest[row[0]] = row[2]
    moving = sorted(
        (pk, moment)
        for pk, moment in latest.items()
        if sensors[pk].last_seen is None or moment > sensors[pk].last_seen
    )
    connection = connections[DB]
    adapt = connection.ops.adapt_datetimefield_value
    table = Sensor._meta.db_table
    with connection.cursor() as cursor:
        for start in range(0, len(moving), 1000):
            chunk = moving[start : start + 1000]
            # One statement per thousand sensors; "only forward" is checked by the database.
            values = " UNION ALL ".join(["SELECT %s AS id, %s AS ts"] * len(chunk))
            cursor.execute(
                f"UPDATE {table} SET last_seen = v.ts FROM ({values}) AS v "
                f"WHERE {table}.id = v.id AND ({table}.last_seen IS NULL OR {table}.last_seen < v.ts)",
                [value for pk, moment in chunk for value in (pk, adapt(moment))],
            )
    now = timezone.now()
    recovered: list[Sensor] = []
    for pk, moment in latest.items():
        sensor = sensors[pk]
        fresh = now - moment < timedelta(seconds=sensor.expected_interval_s * settings.SENSOR_STALE_FACTOR)
        # Compare-and-swap: only a sensor still marked stale recovers, and only once.
        if (
            sensor.status == Sensor.Status.STALE
            and fresh
            and Sensor.objects.filter(pk=pk, status=Sensor.Status.STALE).update(status=Sensor.Status.ACTIVE)
        ):
            sensor.status = Sensor.Status.ACTIVE
            recovered.append(sensor)
    return recovered


@dataclass
class Outcome:
    """A stored batch: the summary for the client and what the events need."""

    result: IngestResult
    inserted: list[Row]
    sensors: dict[int, Sensor]


def ingest(items: Sequence[Any], *, default_sensor: str | None = None) -> Outcome:
    """Validate and store a batch; the caller holds the transaction on the sensors database."""
    wanted = {item.get("sensor_id", default_sensor) for item in items if isinstance(item, dict)} | (
        {default_sensor} if default_sensor else set()
    )
    sensors = {
        s.sensor_id: s
        for s in Sensor.objects.select_related("room")
        .only("sensor_id", "status", "last_seen", "expected_interval_s", "room__name")
        .filter(sensor_id__in=[w for w in wanted if isinstance(w, str)])
    }

    batch = validate(items, sensors, default_sensor=default_sensor)
    rejected = batch.rejected
    points = batch.points
    counter_bases = counter_repeats = 0
    if batch.counters:
        intervals, counter_bases, counter_repeats = counters_to_intervals(batch.counters, rejected)
        points = points + intervals
    unique, duplicates, conflicts = dedupe(points)
    written = write(unique)
    by_pk = {s.pk: s for s in sensors.values()}
    stored_conflicts = written.conflicts
    result: IngestResult = {
        "accepted": len(written.inserted) + counter_bases,
        "duplicates": duplicates + counter_repeats + len(unique) - len(written.inserted) - stored_conflicts,
        "conflicts": conflicts + stored_conflicts,
        "rejected": sorted(rejected, key=lambda r: r["index"]),
    }
    return Outcome(result, written.inserted, by_pk)
