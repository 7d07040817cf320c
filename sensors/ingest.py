"""The one way readings enter: validation, units, counters, de-duplication, bulk write.

Internal to the sensors module; callers use `sensors.services.readings_ingest`.
"""

from __future__ import annotations

import logging
import math
import struct
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import Any, TypedDict

from django.conf import settings
from django.db import connections, transaction
from django.utils import timezone

from energy_dashboard.clock import iso_z
from energy_dashboard.limits import EARLIEST
from sensors.aggregation import MARK_WINDOW_S, bucket_sql, sensor_ids_sql
from sensors.models import (
    MAX_EXPECTED_INTERVAL_S,
    CounterState,
    DirtyBucket,
    Metric,
    Reading,
    Room,
    Sensor,
)

logger = logging.getLogger(__name__)

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
# The largest register value taken (kWh): a meter's register has at most 9-10 digits, even in
# MWh. Past it the rollover arithmetic (10 ** digits) leaves a double's range: a register of
# 1.5e308 kept its sensor's counter failing on every later reading.
COUNTER_MAX_KWH = 1e12


METRICS = frozenset(Metric.values)
ENERGY_HIGH = RANGES[Metric.ENERGY][1]
DB_METRIC_ENERGY = Metric.ENERGY.value


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
class RoomRef:
    """A sensor's room as events name it."""

    name: str


@dataclass(slots=True)
class SensorRef:
    """What an ingest needs of a sensor: read as one row, not as a model instance per sensor.

    Has the attributes of `Sensor` that the ingest and its events use (`pk`, `sensor_id`,
    `status`, `expected_interval_s`, `room_id`, `room.name`); last_seen is in microseconds
    since the epoch (loading a timestamptz costs psycopg ~4 us, an integer nothing).
    """

    pk: int
    sensor_id: str
    status: str
    last_seen_us: int | None
    expected_interval_s: int
    room_id: int | None
    room: RoomRef | None


# A validated point in canonical units, as a plain tuple (one object per point, not six):
# (index in the batch, sensor pk, metric, timestamp (aware, UTC), value, estimated).
Point = tuple[int, int, str, datetime, float, bool]


@dataclass
class Batch:
    """The outcome of validation: points to store and what was refused."""

    points: list[Point] = field(default_factory=list)
    counters: list[Point] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)


class PointError(ValueError):
    """A point that cannot be taken, with the reason shown to the client."""


class SensorsGone(RuntimeError):
    """Sensors of a batch were deleted while it was being stored; the batch must roll back."""

    def __init__(self, pks: set[int]) -> None:
        super().__init__(f"sensors deleted while their readings were stored (ids {sorted(pks)})")
        self.pks = pks


def parse_timestamp(raw: Any, now: datetime) -> datetime:
    """An aware UTC datetime from ISO 8601 with an offset, or epoch seconds/milliseconds,
    within the product's horizon (energy_dashboard.limits: from EARLIEST to now + FUTURE_SKEW)."""
    if isinstance(raw, bool):
        raise PointError("timestamp must be ISO 8601 with an offset, or epoch seconds")
    if isinstance(raw, int | float):
        if isinstance(raw, float) and not math.isfinite(raw):
            raise PointError("timestamp is not a finite number")
        try:
            # An int past a double's range overflows here, in the division or the conversion.
            seconds = raw / 1000.0 if abs(raw) > 1e11 else float(raw)  # milliseconds
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
        try:
            # 0001-01-01T00:00+14:00 and 9999-12-31T23:59-12:00 are valid ISO 8601 whose UTC
            # instant is outside datetime's range.
            moment = moment.astimezone(UTC)
        except OverflowError:
            raise PointError(f"timestamp {raw[:40]!r} is out of range") from None
    else:
        raise PointError("timestamp must be ISO 8601 with an offset, or epoch seconds")
    if moment > now + FUTURE_SKEW:
        raise PointError(f"timestamp {iso_z(moment, timespec='seconds')} is in the future")
    if moment < EARLIEST:
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


# How a (metric, unit) pair converts: a factor (None: call `convert`, for temperatures) and the
# physical range; or the reason the unit is refused.
Scale = tuple[float | None, float, float] | str


def _scale(metric: str, unit: str | None) -> Scale:
    try:
        convert(metric, 1.0, unit)  # the same check, and the same message, as for each point
    except PointError as exc:
        return str(exc)
    low, high = RANGES[metric]
    if metric == Metric.TEMPERATURE:
        return None, low, high
    return UNITS[metric][(unit if unit is not None else DEFAULT_UNIT[metric]).strip().lower()], low, high


def _moment(raw: Any, now: datetime, stamps: dict[str | int | float, datetime | str]) -> datetime:
    """`parse_timestamp`, remembered per raw value for the batch (its items share timestamps)."""
    if not isinstance(raw, str | int | float) or isinstance(raw, bool):
        return parse_timestamp(raw, now)  # refused, with its message
    moment = stamps.get(raw)
    if moment is None:
        try:
            moment = parse_timestamp(raw, now)
        except PointError as exc:
            moment = str(exc)
        stamps[raw] = moment
    if isinstance(moment, str):
        raise PointError(moment)
    return moment


def _finite_number(raw: Any) -> bool:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return False
    try:
        return math.isfinite(raw)
    except OverflowError:  # an int past a double's range
        return False


def validate(  # noqa: PLR0915 (one loop on the hot path: a helper per check costs a call per item)
    items: Sequence[Any], sensors: Mapping[str, SensorRef], *, default_sensor: str | None = None
) -> Batch:
    """Check each item; return the good points in canonical units and the reasons for the rest.

    The checks, their order and their messages are one per item; what repeats across items (a
    timestamp shared by a batch's sensors, a metric's unit) is worked out once per batch.
    """
    now = timezone.now()
    isfinite = math.isfinite
    batch = Batch()
    points, counters, rejected = batch.points, batch.counters, batch.rejected
    # raw timestamp -> its datetime, or the reason it is refused (the same for every item).
    stamps: dict[str | int | float, datetime | str] = {}
    scales: dict[tuple[str, str | None], Scale] = {}
    for index, item in enumerate(items):
        try:
            if not isinstance(item, dict):
                raise PointError("each reading must be an object")
            get = item.get
            sensor_id = get("sensor_id", default_sensor)
            if default_sensor is not None and sensor_id != default_sensor:
                raise PointError(f"sensor_id {sensor_id!r} differs from the URL's {default_sensor!r}")
            if not isinstance(sensor_id, str) or not sensor_id:
                raise PointError("sensor_id is missing")
            sensor = sensors.get(sensor_id)
            if sensor is None:
                raise PointError(f"unknown sensor {sensor_id!r}")
            metric = get("metric")
            counter = metric == COUNTER_METRIC
            if not counter and not (isinstance(metric, str) and metric in METRICS):
                raise PointError(f"metric {metric!r} is not one of {sorted([*METRICS, COUNTER_METRIC])}")
            # Exact types first (JSON gives int and float; bool is neither), then the general check.
            kind = type(raw := get("value"))
            if not (kind is int or (kind is float and isfinite(raw))) and not _finite_number(raw):
                raise PointError("value must be a finite number")
            # The batch's timestamps repeat: a string seen before is one dict lookup.
            moment = stamps.get(stamp) if type(stamp := get("timestamp")) is str else None
            if type(moment) is not datetime:
                moment = _moment(stamp, now, stamps)
            unit = get("unit")
            if unit is not None and not isinstance(unit, str):
                raise PointError("unit must be a string")
            quality = get("quality", "measured")
            if quality not in ("measured", "estimated"):
                raise PointError("quality must be 'measured' or 'estimated'")
            canonical = DB_METRIC_ENERGY if counter else metric
            scale = scales.get((canonical, unit))
            if scale is None:
                scale = scales[(canonical, unit)] = _scale(canonical, unit)
            if isinstance(scale, str):
                raise PointError(scale)
            factor, low, high = scale
            try:
                value = float(raw) * factor if factor is not None else convert(canonical, float(raw), unit)
            except OverflowError:  # an int past a double's range
                raise PointError("value must be a finite number") from None
            if counter:
                if value < 0:
                    raise PointError("an energy counter cannot be negative")
                if not value <= COUNTER_MAX_KWH:  # also inf, from a unit's factor
                    raise PointError(f"an energy register of {value:g} kWh is past {COUNTER_MAX_KWH:g} kWh")
            elif not low <= value <= high:  # a register has no physical range
                raise PointError(f"{metric} {value:g} is outside the physical range {low:g}..{high:g}")
            (counters if counter else points).append(
                (index, sensor.pk, canonical, moment, value, quality == "estimated")
            )
        except PointError as exc:
            rejected.append({"index": index, "reason": str(exc)})
    return batch


def counters_to_intervals(counters: list[Point], rejected: list[Rejection]) -> tuple[list[Point], int, int]:
    """Interval energy from cumulative registers, against each sensor's last stored value.

    A register that goes down is a rollover when it was near the top of its decimal range
    (999 999 -> 12 continues at 1 000 012), otherwise a meter reset (the new value is the
    energy since the reset). A step implying more than MAX_COUNTER_POWER_KW is a spike:
    refused, and the register is re-based so the next step is measured from it; so is a step
    past the energy range (RANGES), and a stored register outside 0..COUNTER_MAX_KWH (an old
    row) is replaced by the next value as a new base.
    Runs inside the ingest transaction; the states are locked on PostgreSQL. Returns the
    interval points, how many register values only set a sensor's base, and how many were
    repeats of the last stored register value.
    """
    bases = repeats = 0
    by_sensor: dict[int, list[Point]] = defaultdict(list)
    for point in counters:
        by_sensor[point[1]].append(point)
    states = {
        s.sensor_id: s for s in CounterState.objects.select_for_update().filter(sensor_id__in=list(by_sensor))
    }
    intervals: list[Point] = []
    changed: list[CounterState] = []
    created: list[CounterState] = []
    for sensor_pk, points in by_sensor.items():
        points.sort(key=itemgetter(3))
        state = states.get(sensor_pk)
        for index, _, metric, moment, value, estimated in points:
            if state is not None and not 0 <= state.value <= COUNTER_MAX_KWH:
                # A stored register no step can be measured from (an old row, a manual edit;
                # NaN fails the comparison too): this value becomes the base, as a first one.
                logger.warning(
                    "sensor pk %s: stored energy register %r is outside 0..%g kWh; re-based on %r",
                    sensor_pk,
                    state.value,
                    COUNTER_MAX_KWH,
                    value,
                )
                state.timestamp, state.value = moment, value
                if state not in changed:
                    changed.append(state)
                bases += 1
                continue
            if state is None:
                state = CounterState(sensor_id=sensor_pk, timestamp=moment, value=value)
                created.append(state)
                bases += 1  # the first register value only sets the base
                continue
            if moment <= state.timestamp:
                if moment == state.timestamp and value == state.value:
                    repeats += 1  # the same register reading again
                    continue
                rejected.append({"index": index, "reason": "counter reading is not newer than the last one"})
                continue
            delta = value - state.value
            if delta < 0:
                top = 10 ** math.ceil(math.log10(state.value + 1))
                delta = (top - state.value) + value if state.value >= 0.9 * top else value
            hours = (moment - state.timestamp).total_seconds() / 3600.0
            if delta / hours > MAX_COUNTER_POWER_KW:
                rejected.append({"index": index, "reason": f"counter jumped {delta:g} kWh in {hours:g} h"})
            elif delta > ENERGY_HIGH:
                # A step after a long silence: stored as one interval reading it would be past
                # the energy range that every other reading is held to.
                reason = f"counter step of {delta:g} kWh is past the energy range 0..{ENERGY_HIGH:g} kWh"
                rejected.append({"index": index, "reason": reason})
            else:
                # Labelled with the interval's start, as all interval energy is: the step
                # from the last register reading to this one belongs to [last, this).
                intervals.append((index, sensor_pk, metric, state.timestamp, delta, estimated))
            state.timestamp, state.value = moment, value
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
        key = (point[1], point[2], point[3])
        if key in seen:
            if seen[key] == point[4]:
                duplicates += 1
            else:
                conflicts += 1
            continue
        seen[key] = point[4]
        unique.append(point)
    return unique, duplicates, conflicts


# A stored reading: (sensor pk, metric, timestamp, value, estimated).
Row = tuple[int, str, datetime, float, bool]


@dataclass
class Written:
    """What the bulk write stored, and what it left out."""

    inserted: list[Row]
    conflicts: int  # points already stored with another value (the stored one is kept)
    # Points repeating an earlier point of the batch (sensor, metric, timestamp): with its
    # value, and with another one (the first is kept).
    repeats: int = 0
    repeat_conflicts: int = 0


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
STAGING = "sensors_staging"
COLUMNS = "(sensor_id, metric, timestamp, value, estimated)"


def write(points: list[Point]) -> Written:
    """Store a batch's new points in bulk; repeats inside the batch and points already stored
    are left out and counted (the first value, and the stored one, are kept).

    On PostgreSQL a large batch is first tried as one COPY straight into the readings table,
    in a savepoint (`_copy_new`, which skips repeats in its own key-ordered pass): the usual
    batch is all new, and then nothing else is needed, not even `dedupe` (a dict of every
    point's key: ~1 us a point). If any point is stored already, the savepoint is rolled back
    and the batch takes the general path (`_write_staged`), as it always does on SQLite.
    """
    if not points:
        return Written([], 0)
    connection = connections[DB]
    small = connection.vendor == "postgresql" and len(points) <= SMALL_BATCH
    if connection.vendor == "postgresql" and not small:
        from psycopg.errors import UniqueViolation  # here: SQLite-only set-ups need no psycopg

        try:
            return _copy_new(points)
        except UniqueViolation:
            pass  # some point is stored already: the savepoint undid the COPY
    unique, repeats, repeat_conflicts = dedupe(points)
    if small:
        written = _insert_small(unique)
    else:
        with connection.cursor() as cursor:
            written = _write_staged(cursor, unique, connection.vendor)
    written.repeats, written.repeat_conflicts = repeats, repeat_conflicts
    return written


# Up to this many points a batch is one INSERT ... ON CONFLICT statement (one round trip);
# above it, COPY, whose fixed cost (a savepoint and two COPYs: six round trips, ~5 ms) the
# bulk speed repays. A live feed's batches are small: for 100 points the statement took
# about a fifth of the COPY path's time.
SMALL_BATCH = 500


def _array(values: Iterable[str]) -> str:
    # Array literal of values that need no quoting: integers, metric names, ISO 8601
    # timestamps, float reprs, t/f.
    return "{" + ",".join(values) + "}"


def _text_array(values: Iterable[str]) -> str:
    # Array literal of any text: each element double-quoted, its backslashes and quotes
    # escaped. For 1,000 sensor ids a third of psycopg's list dumping (1-2 ms a batch).
    return "{" + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "}"


def _insert_small(points: list[Point]) -> Written:
    """PostgreSQL: store a small batch and its hours' dirty marks in one statement; count the
    stored points whose value differs only when some point was not new."""
    reading = Reading._meta.db_table
    ordered = sorted(points, key=itemgetter(1, 2, 3))  # key order: see _copy_new
    stamps: dict[datetime, str] = {}
    arrays = [
        _array([str(p[1]) for p in ordered]),
        _array([p[2] for p in ordered]),
        _array([stamps.get(p[3]) or stamps.setdefault(p[3], p[3].isoformat()) for p in ordered]),
        _array([repr(p[4]) for p in ordered]),
        _array(["t" if p[5] else "f" for p in ordered]),
    ]
    given = (
        "unnest(%s::bigint[], %s::varchar[], %s::timestamptz[], %s::float8[], %s::boolean[]) "
        "AS i(sensor_id, metric, timestamp, value, estimated)"
    )
    connection = connections[DB]
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH new AS (INSERT INTO {reading} {COLUMNS} "
            f"SELECT sensor_id, metric, timestamp, value, estimated FROM {given} "
            "ON CONFLICT (sensor_id, metric, timestamp) DO NOTHING "
            "RETURNING sensor_id, metric, timestamp), "
            f"marked AS (INSERT INTO {DirtyBucket._meta.db_table} (metric, bucket, sensor_ids) "
            f"SELECT metric, {bucket_sql('postgresql', 'timestamp', MARK_WINDOW_S)}, "
            f"{sensor_ids_sql('postgresql')} FROM new GROUP BY 1, 2) "
            "SELECT sensor_id, metric, (extract(epoch FROM timestamp) * 1000000)::bigint FROM new",
            arrays,
        )
        rows = cursor.fetchall()
        conflicts = 0
        if len(rows) < len(points):
            # A statement of its own: it must see what a concurrent batch stored meanwhile.
            cursor.execute(
                f"SELECT count(*) FROM {given} JOIN {reading} r ON r.sensor_id = i.sensor_id "
                "AND r.metric = i.metric AND r.timestamp = i.timestamp WHERE r.value <> i.value",
                arrays,
            )
            conflicts = int(cursor.fetchone()[0])
    if len(rows) == len(points):
        inserted = [(p[1], p[2], p[3], p[4], p[5]) for p in points]
    else:
        new_keys = {(r[0], r[1], r[2]) for r in rows}
        inserted = [(p[1], p[2], p[3], p[4], p[5]) for p in points if (p[1], p[2], _micros(p[3])) in new_keys]
    return Written(inserted, conflicts)  # in batch order, as the other paths


# COPY's binary format (PostgreSQL docs, "COPY ... Binary Format"): the readings go in as
# binary tuples, so PostgreSQL parses no timestamp or float text (about a fifth of its COPY
# time for a batch); the pieces a batch repeats are packed once.
_BINARY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
_BINARY_TRAILER = b"\xff\xff"
_PG_EPOCH_US = 946_684_800 * 1_000_000  # 2000-01-01 UTC, in microseconds since 1970
_KEY = struct.Struct(">hiqi")  # 5 fields; sensor_id (int8); the metric's length
_INSTANT = struct.Struct(">iq")  # timestamptz: microseconds since 2000-01-01 UTC
_VALUE = struct.Struct(">id")  # float8
_ESTIMATED = (b"\x00\x00\x00\x01\x00", b"\x00\x00\x00\x01\x01")  # bool: false, true


def _copy_new(points: list[Point]) -> Written:
    """COPY points that are all new into the readings table, and their hours' dirty marks.

    UniqueViolation (after rolling back its savepoint) when any point is stored already. Rows
    go in key order, so concurrent batches of the same sensors take the index's locks in one
    order; a point repeating one of the batch follows it there and is skipped and counted, as
    `dedupe` would (the first wins). The readings are the points, in batch order, so nothing
    is read back.
    """
    # Per distinct instant (a batch's points share few): its binary field and its window.
    instants: dict[datetime, tuple[bytes, int]] = {}
    # One dirty mark per (metric, window), naming its sensors.
    windows: dict[tuple[str, int], set[int]] = defaultdict(set)
    pack_value = _VALUE.pack
    # In key order a sensor's points follow each other: its key field is packed, and its
    # windows marked, when the sensor, metric or window changes, not once per point.
    last_pk: int | None = None
    last_metric, key = "", b""
    last_window: int | None = None
    last_moment: datetime | None = None
    last_value = 0.0
    repeated: dict[int, bool] = {}  # index of a skipped repeat -> whether its value differs
    connection = connections[DB]
    with transaction.atomic(using=DB), connection.cursor() as cursor:
        with cursor.copy(f"COPY {Reading._meta.db_table} {COLUMNS} FROM STDIN (FORMAT BINARY)") as copy:
            # Sent as it is packed: PostgreSQL stores one piece while the next is packed, on
            # the other core (a file's chunk of 100,000 took ~150 ms to pack before its COPY
            # began).
            parts = [_BINARY_HEADER]
            # sorted() is stable: among repeats of a key the batch's first comes first.
            for n, (index, pk, metric, moment, value, estimated) in enumerate(
                sorted(points, key=itemgetter(1, 2, 3)), 1
            ):
                instant = instants.get(moment)
                if instant is None:
                    micros = _micros(moment)
                    instant = instants[moment] = (
                        _INSTANT.pack(8, micros - _PG_EPOCH_US),
                        micros // (MARK_WINDOW_S * 1_000_000),
                    )
                if pk != last_pk or metric != last_metric:
                    name = metric.encode()
                    key = _KEY.pack(5, 8, pk, len(name)) + name
                    last_pk, last_metric, last_window = pk, metric, None
                elif moment == last_moment:
                    repeated[index] = value != last_value
                    continue
                last_moment, last_value = moment, value
                packed, window = instant
                if window != last_window:
                    windows[(metric, window)].add(pk)
                    last_window = window
                parts += (key, packed, pack_value(8, value), _ESTIMATED[estimated])
                if not n % COPY_PIECE:
                    copy.write(b"".join(parts))
                    parts = []
            parts.append(_BINARY_TRAILER)
            copy.write(b"".join(parts))
        # Marks as the SQL of the general path computes them (bucket_sql): the window's start,
        # UTC. Metrics come from our own vocabulary and timestamps are ISO 8601: nothing in
        # the marks needs escaping in COPY's text format.
        starts = {w: (EPOCH + timedelta(seconds=w * MARK_WINDOW_S)).isoformat() for _, w in windows}
        marks = "".join(
            f"{metric}\t{starts[w]}\t{','.join(map(str, sorted(ids)))}\n"
            for (metric, w), ids in windows.items()
        )
        with cursor.copy(
            f"COPY {DirtyBucket._meta.db_table} (metric, bucket, sensor_ids) FROM STDIN"
        ) as copy:
            copy.write(marks)
    conflicting = sum(repeated.values())
    return Written(
        [
            (pk, metric, moment, value, estimated)
            for index, pk, metric, moment, value, estimated in points
            if not repeated or index not in repeated
        ],
        0,
        repeats=len(repeated) - conflicting,
        repeat_conflicts=conflicting,
    )


# Rows per piece of a COPY: ~90 KB, under psycopg's largest single write (128 KB), which it
# would otherwise copy into slices.
COPY_PIECE = 2_000


def _write_staged(cursor: Any, points: list[Point], vendor: str) -> Written:
    """The general path: stage the rows, then one INSERT ... ON CONFLICT DO NOTHING RETURNING
    moves the new ones, and a join counts the stored points whose value differs."""
    reading = Reading._meta.db_table
    if vendor == "postgresql":
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {STAGING} (sensor_id bigint, metric varchar(16), "
            "timestamp timestamptz, value double precision, estimated boolean) ON COMMIT DELETE ROWS"
        )
        # Emptied by each commit, but a caller's outer transaction may hold several batches.
        cursor.execute(f"DELETE FROM {STAGING}")
        # COPY's text format built in one buffer: one write instead of one per row.
        with cursor.copy(f"COPY {STAGING} {COLUMNS} FROM STDIN") as copy:
            copy.write(
                "".join(
                    f"{pk}\t{metric}\t{moment.isoformat()}\t{value!r}\t{'t' if estimated else 'f'}\n"
                    for _, pk, metric, moment, value, estimated in points
                )
            )
    else:
        adapt = connections[DB].ops.adapt_datetimefield_value
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {STAGING} (sensor_id integer, metric text, "
            "timestamp text, value real, estimated bool)"
        )
        cursor.execute(f"DELETE FROM {STAGING}")
        cursor.executemany(
            f"INSERT INTO {STAGING} {COLUMNS} VALUES (%s, %s, %s, %s, %s)",
            [
                (pk, metric, adapt(moment), value, estimated)
                for _, pk, metric, moment, value, estimated in points
            ],
        )
    # WHERE true: SQLite needs it to tell the upsert's ON from a join's. RETURNING gives the
    # keys of the rows this statement inserted (not those a concurrent writer stored first);
    # as microseconds on PostgreSQL and as the stored text on SQLite, which map back to the
    # points without parsing a datetime per row.
    returned = "(extract(epoch from timestamp) * 1000000)::bigint" if vendor == "postgresql" else "timestamp"
    cursor.execute(
        f"INSERT INTO {reading} {COLUMNS} "
        f"SELECT sensor_id, metric, timestamp, value, estimated FROM {STAGING} WHERE true "
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
            f"INSERT INTO {DirtyBucket._meta.db_table} (metric, bucket, sensor_ids) "
            f"SELECT metric, {bucket}, {sensor_ids_sql(vendor)} FROM {STAGING} WHERE true GROUP BY 1, 2",
            [],
        )
    cursor.execute(
        f"SELECT count(*) FROM {STAGING} s JOIN {reading} r ON r.sensor_id = s.sensor_id "
        "AND r.metric = s.metric AND r.timestamp = s.timestamp WHERE r.value <> s.value"
    )
    conflicts = int(cursor.fetchone()[0])
    cursor.execute(f"DELETE FROM {STAGING}")
    if vendor == "postgresql":
        by_key = {(p[1], p[2], _micros(p[3])): p for p in points}
    else:
        # SQLite returns the stored text, parsed by Django's converter into a naive UTC datetime.
        by_key = {(p[1], p[2], p[3].replace(tzinfo=None)): p for p in points}
        rows = [
            (r[0], r[1], r[2] if isinstance(r[2], datetime) else datetime.fromisoformat(r[2])) for r in rows
        ]
    inserted = [(p[1], p[2], p[3], p[4], p[5]) for p in (by_key[(r[0], r[1], r[2])] for r in rows)]
    return Written(inserted, conflicts)


def _micros(moment: datetime) -> int:
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def touch_sensors(sensors: Mapping[int, SensorRef], inserted: Sequence[Row]) -> list[SensorRef]:
    """Move each sensor's last_seen forward, lock every sensor of the batch, and make stale
    sensors with fresh data active again. Returns the sensors that recovered.

    The readings table has no database foreign key (ADR 0006); this keeps its guarantee. On
    PostgreSQL every sensor of the batch ends up locked until the commit: by the last_seen
    UPDATE, or `FOR KEY SHARE` for those it did not move. `sensor_delete` locks the sensor
    `FOR UPDATE` first, so a deletion either waits for this commit (and then deletes these
    readings too) or has committed already: then the sensor is missing here, and SensorsGone
    rolls the batch back. Meant to run last in the ingest transaction, so the rows stay
    locked only for the commit.
    """
    latest: dict[int, datetime] = {}
    for row in inserted:
        seen = latest.get(row[0])
        if seen is None or row[2] > seen:
            latest[row[0]] = row[2]
    moving: list[tuple[int, datetime, int]] = []  # sensor pk, new last_seen, as epoch microseconds
    for pk, moment in sorted(latest.items()):
        last_seen = sensors[pk].last_seen_us
        micros = _micros(moment)
        if last_seen is None or micros > last_seen:
            moving.append((pk, moment, micros))
    connection = connections[DB]
    table = Sensor._meta.db_table
    locked: set[int] = set()
    # "Only forward" is checked by the database too: a concurrent batch may have moved it.
    forward = f"{table}.id = v.id AND ({table}.last_seen IS NULL OR {table}.last_seen < v.ts)"
    with connection.cursor() as cursor:
        if moving and connection.vendor == "postgresql":
            # Two array parameters: a statement of thousands of literals costs more to plan
            # (~0.2 s for 1,000 sensors as a UNION ALL) than the update itself. Written as
            # array literals of integers: psycopg's dumping of a list of datetimes costs ~3 ms
            # per thousand, and isoformat() a third of that; microseconds are exact.
            cursor.execute(
                f"UPDATE {table} SET last_seen = v.ts FROM (SELECT id, "
                "timestamptz 'epoch' + us * interval '1 microsecond' AS ts "
                f"FROM unnest(%s::bigint[], %s::bigint[]) AS u(id, us)) AS v WHERE {forward} "
                f"RETURNING {table}.id",
                [_array([str(pk) for pk, _, _ in moving]), _array([str(us) for _, _, us in moving])],
            )
            locked = {row[0] for row in cursor.fetchall()}
        elif moving:
            adapt = connection.ops.adapt_datetimefield_value
            for start in range(0, len(moving), 1000):
                chunk = moving[start : start + 1000]
                values = " UNION ALL ".join(["SELECT %s AS id, %s AS ts"] * len(chunk))
                cursor.execute(
                    f"UPDATE {table} SET last_seen = v.ts FROM ({values}) AS v WHERE {forward}",
                    [value for pk, moment, _ in chunk for value in (pk, adapt(moment))],
                )
        if connection.vendor == "postgresql":
            # The rest: not moved (late data, or moved further by a concurrent batch). Usually none.
            rest = sensors.keys() - locked
            if rest:
                cursor.execute(
                    f"SELECT id FROM {table} WHERE id = ANY(%s::bigint[]) FOR KEY SHARE",
                    [_array([str(pk) for pk in sorted(rest)])],
                )
                gone = rest - {row[0] for row in cursor.fetchall()}
                if gone:
                    raise SensorsGone(gone)
    now = timezone.now()
    recovered: list[SensorRef] = []
    for pk, moment in latest.items():
        sensor = sensors[pk]
        if sensor.status != Sensor.Status.STALE:
            continue  # the usual case, decided before any arithmetic
        # The interval taken at most MAX_EXPECTED_INTERVAL_S: a stored 2^63-1 overflowed here.
        interval = min(sensor.expected_interval_s, MAX_EXPECTED_INTERVAL_S)
        fresh = now - moment < timedelta(seconds=interval * settings.SENSOR_STALE_FACTOR)
        # Compare-and-swap: only a sensor still marked stale recovers, and only once.
        if fresh and Sensor.objects.filter(pk=pk, status=Sensor.Status.STALE).update(
            status=Sensor.Status.ACTIVE
        ):
            sensor.status = Sensor.Status.ACTIVE
            recovered.append(sensor)
    return recovered


def sensor_refs(sensor_ids: Sequence[str]) -> dict[str, SensorRef]:
    """The named sensors that exist, by sensor_id, read in one query.

    Not locked here: `touch_sensors` locks them at the end of the batch, where the last_seen
    UPDATE takes most of the locks anyway (locking 1,000 rows here cost ~2 ms a batch, and
    two concurrent batches of the same sensors shared each lock through a MultiXact).
    """
    connection = connections[DB]
    rows: list[tuple[Any, ...]]
    if connection.vendor == "postgresql":
        # One array parameter: IN with thousands of placeholders costs more to build and parse
        # than the query takes to run.
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT s.id, s.sensor_id, s.status, (extract(epoch FROM s.last_seen) * 1000000)::bigint, "
                "s.expected_interval_s, s.room_id, r.name "
                f"FROM {Sensor._meta.db_table} s LEFT JOIN {Room._meta.db_table} r ON r.id = s.room_id "
                "WHERE s.sensor_id = ANY(%s::text[])",
                [_text_array(sensor_ids)],
            )
            rows = cursor.fetchall()
    else:
        rows = [
            (pk, sensor_id, status, None if last_seen is None else _micros(last_seen), *rest)
            for pk, sensor_id, status, last_seen, *rest in Sensor.objects.filter(
                sensor_id__in=sensor_ids
            ).values_list(
                "pk", "sensor_id", "status", "last_seen", "expected_interval_s", "room_id", "room__name"
            )
        ]
    rooms: dict[int, RoomRef] = {}
    refs: dict[str, SensorRef] = {}
    for pk, sensor_id, status, last_seen, interval, room_id, room_name in rows:
        room = None
        if room_id is not None:
            room = rooms.get(room_id) or rooms.setdefault(room_id, RoomRef(room_name))
        refs[sensor_id] = SensorRef(pk, sensor_id, status, last_seen, interval, room_id, room)
    return refs


@dataclass
class Outcome:
    """A stored batch: the summary for the client and what the events need."""

    result: IngestResult
    inserted: list[Row]
    sensors: dict[int, SensorRef]


# A reading already typed by a trusted parser: (sensor_id, metric, timestamp (aware), value in
# the metric's canonical unit, estimated).
TypedRow = tuple[str, str, datetime, float, bool]


def ingest_rows(rows: Sequence[TypedRow]) -> Outcome:
    """Store typed rows (a meter file's records): the checks of `validate` that can still fail
    (known sensor, stored metric, finite value in the physical range, within the horizon) with
    its messages, without parsing items; no units, no counters. Rejections carry the row's
    index. The caller holds the transaction on the sensors database."""
    sensors = sensor_refs(sorted({row[0] for row in rows}))
    latest = timezone.now() + FUTURE_SKEW
    points: list[Point] = []
    rejected: list[Rejection] = []
    for index, (sensor_id, metric, moment, value, estimated) in enumerate(rows):
        sensor = sensors.get(sensor_id)
        bounds = RANGES.get(metric)
        if sensor is None:
            rejected.append({"index": index, "reason": f"unknown sensor {sensor_id!r}"})
        elif bounds is None or metric not in METRICS:
            rejected.append({"index": index, "reason": f"metric {metric!r} is not one of {sorted(METRICS)}"})
        elif not (math.isfinite(value) and bounds[0] <= value <= bounds[1]):
            reason = f"{metric} {value:g} is outside the physical range {bounds[0]:g}..{bounds[1]:g}"
            rejected.append({"index": index, "reason": reason})
        elif moment > latest:
            reason = f"timestamp {iso_z(moment, timespec='seconds')} is in the future"
            rejected.append({"index": index, "reason": reason})
        elif moment < EARLIEST:
            rejected.append({"index": index, "reason": "timestamp is before 1971"})
        else:
            points.append((index, sensor.pk, metric, moment, value, estimated))
    written = write(points)
    result: IngestResult = {
        "accepted": len(written.inserted),
        "duplicates": _duplicates(points, written),
        "conflicts": written.repeat_conflicts + written.conflicts,
        "rejected": rejected,
    }
    return Outcome(result, written.inserted, {ref.pk: ref for ref in sensors.values()})


def _duplicates(points: list[Point], written: Written) -> int:
    """Points left out as already there with the same value: repeats inside the batch, and
    points stored before (those not inserted and not conflicting)."""
    unique = len(points) - written.repeats - written.repeat_conflicts
    return written.repeats + unique - len(written.inserted) - written.conflicts


def _named_sensors(items: Sequence[Any], default_sensor: str | None) -> list[str]:
    """The distinct sensor ids a batch names; only strings (validate refuses the rest)."""
    try:
        # The usual batch: every item an object naming its sensor. Faster than the loop below.
        named = set(map(itemgetter("sensor_id"), items))
    except (TypeError, KeyError, IndexError):
        named = {
            sensor_id
            for item in items
            if isinstance(item, dict) and isinstance(sensor_id := item.get("sensor_id", default_sensor), str)
        }
    if default_sensor:
        named.add(default_sensor)
    # PostgreSQL text cannot hold NUL: no sensor has such an id, and validate refuses it.
    return [sensor_id for sensor_id in named if isinstance(sensor_id, str) and "\x00" not in sensor_id]


def ingest(items: Sequence[Any], *, default_sensor: str | None = None) -> Outcome:
    """Validate and store a batch; the caller holds the transaction on the sensors database."""
    sensors = sensor_refs(_named_sensors(items, default_sensor))

    batch = validate(items, sensors, default_sensor=default_sensor)
    rejected = batch.rejected
    points = batch.points
    counter_bases = counter_repeats = 0
    if batch.counters:
        intervals, counter_bases, counter_repeats = counters_to_intervals(batch.counters, rejected)
        points = points + intervals
    written = write(points)
    by_pk = {s.pk: s for s in sensors.values()}
    result: IngestResult = {
        "accepted": len(written.inserted) + counter_bases,
        "duplicates": _duplicates(points, written) + counter_repeats,
        "conflicts": written.repeat_conflicts + written.conflicts,
        "rejected": sorted(rejected, key=lambda r: r["index"]),
    }
    return Outcome(result, written.inserted, by_pk)
