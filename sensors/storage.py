"""How readings are stored: the bulk write paths (one INSERT, COPY, staged upsert), the dirty
marks for the rollups, the sensors' last_seen and locks, their counter state, and the reads of
the registry that a batch needs.

Every point reaching here has passed `sensors.rules`. Raw SQL of the sensors module's writes
lives here (and the rollups' in `sensors.aggregation`). Internal to the sensors module;
callers use `sensors.services`.
"""

from __future__ import annotations

import struct
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import Any

from django.conf import settings
from django.db import connections, transaction
from django.utils import timezone

from sensors import rules
from sensors.aggregation import MARK_WINDOW_S, bucket_sql, sensor_ids_sql
from sensors.models import (
    MAX_EXPECTED_INTERVAL_S,
    CounterState,
    DirtyBucket,
    Reading,
    Room,
    Sensor,
)
from sensors.rules import Point, Rejection

DB = "sensors"


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


class SensorsGone(RuntimeError):
    """Sensors of a batch were deleted while it was being stored; the batch must roll back."""

    def __init__(self, pks: set[int]) -> None:
        super().__init__(f"sensors deleted while their readings were stored (ids {sorted(pks)})")
        self.pks = pks


def counters_to_intervals(counters: list[Point], rejected: list[Rejection]) -> tuple[list[Point], int, int]:
    """Interval energy from cumulative registers (`rules.register_steps`), against each
    sensor's counter state, which is read locked (on PostgreSQL) and written back.

    Runs inside the ingest transaction. Returns the interval points, how many register values
    only set a sensor's base, and how many were repeats of the last stored register value.
    """
    pks = list(dict.fromkeys(point[1] for point in counters))
    states = {s.sensor_id: s for s in CounterState.objects.select_for_update().filter(sensor_id__in=pks)}
    registers = {pk: (state.timestamp, state.value) for pk, state in states.items()}
    steps = rules.register_steps(counters, registers, rejected)
    created: list[CounterState] = []
    changed: list[CounterState] = []
    for pk in steps.moved:
        moment, value = registers[pk]
        state = states.get(pk)
        if state is None:
            created.append(CounterState(sensor_id=pk, timestamp=moment, value=value))
        else:
            state.timestamp, state.value = moment, value
            changed.append(state)
    CounterState.objects.bulk_create(created)
    CounterState.objects.bulk_update(changed, ["timestamp", "value"])
    return steps.intervals, steps.bases, steps.repeats


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
    # Keyed as each backend returns a row: epoch microseconds (PostgreSQL) or a naive datetime.
    by_key: dict[tuple[int, str, int | datetime], Point]
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


def sensors_insert(sensors: Sequence[Sensor]) -> list[Sensor]:
    """Insert new sensors in one statement per 500; the ones this call created, with their pk.

    A sensor whose sensor_id or external_id another transaction stored meanwhile is skipped
    (ON CONFLICT DO NOTHING), not created twice. A file of new meters used to register them
    one `get_or_create` at a time: six round trips each, and in an import each waited for the
    parser thread to hand the GIL back (~40 ms a meter, 8 s of a 2,000,000-reading file of
    200 meters; bench/ingest_files.py).
    """
    connection = connections[DB]
    fields = [f for f in Sensor._meta.concrete_fields if not f.primary_key]
    # A concrete field always has a column; django-stubs types Field.column as str | None.
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)  # type: ignore[arg-type]
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    created: list[Sensor] = []
    for start in range(0, len(sensors), 500):
        chunk = {(sensor.sensor_id, sensor.external_id): sensor for sensor in sensors[start : start + 500]}
        params = [
            # pre_save sets created_at/updated_at as save() would; the field prepares the value.
            f.get_db_prep_save(f.pre_save(sensor, add=True), connection)
            for sensor in chunk.values()
            for f in fields
        ]
        values = ", ".join([row] * len(chunk))
        with connection.cursor() as cursor:
            cursor.execute(  # identifiers are the model's own; every value is a parameter
                f"INSERT INTO {Sensor._meta.db_table} ({columns}) VALUES {values} "
                "ON CONFLICT DO NOTHING RETURNING id, sensor_id, external_id",
                params,
            )
            for pk, sensor_id, external_id in cursor.fetchall():
                sensor = chunk[(sensor_id, external_id)]
                sensor.pk = pk
                created.append(sensor)
    return created
