"""The public face of the sensors module: other modules and the project call only this."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypedDict, overload

from django.conf import settings
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from energy_dashboard.clock import iso_z
from energy_dashboard.events import energy_data, send_on_commit, sensor_events
from energy_dashboard.limits import EARLIEST
from energy_dashboard.startup import gc_paused
from sensors import aggregation, analytics, analytics_cache, live, rules, simulation, storage
from sensors.models import MAX_EXPECTED_INTERVAL_S, Reading, Rollup, Room, RoomMetrics, Sensor
from sensors.rules import Point, Rejection, TypedRow
from sensors.storage import Row, SensorRef, Written

logger = logging.getLogger(__name__)

DB = "sensors"


class IngestResult(TypedDict):
    """What happened to a batch."""

    accepted: int
    duplicates: int
    conflicts: int
    rejected: list[Rejection]


@dataclass
class Outcome:
    """A stored batch: the summary for the client and what the events need."""

    result: IngestResult
    inserted: list[Row]
    sensors: dict[int, SensorRef]


def room_create(
    *,
    name: str,
    display_name: str = "",
    floor: str = "",
    area_m2: float | None = None,
    capacity: int | None = None,
) -> Room:
    """Create a room (or return the one with that name, unchanged)."""
    room, _ = Room.objects.get_or_create(
        name=name,
        defaults={
            "display_name": display_name,
            "floor": floor,
            "area_m2": area_m2,
            "capacity": capacity,
        },
    )
    return room


def sensor_register(
    *,
    sensor_id: str,
    kind: str,
    name: str = "",
    room_name: str | None = None,
    external_id: str | None = None,
    expected_interval_s: int = 300,
    metadata: dict[str, Any] | None = None,
    status: str = Sensor.Status.ACTIVE,
) -> Sensor:
    """Register a sensor if its id is new; send `sensor_events` (registered) when it was."""
    with transaction.atomic(using=DB):
        room = Room.objects.get(name=room_name) if room_name else None
        sensor, created = Sensor.objects.get_or_create(
            sensor_id=sensor_id,
            defaults={
                "kind": kind,
                "name": name,
                "room": room,
                "external_id": external_id,
                "expected_interval_s": expected_interval_s,
                "metadata": metadata or {},
                "status": status,
            },
        )
        if created:
            _sensor_event(sensor, "registered")
    return sensor


def _sensor_event(sensor: Sensor | SensorRef, event: str) -> None:
    send_on_commit(
        sensor_events,
        sender=Sensor,
        using=DB,
        sensor_id=sensor.sensor_id,
        event=event,
        status=sensor.status,
        room=sensor.room.name if sensor.room_id and sensor.room else None,
    )


def sensor_update(*, sensor: Sensor, **changes: Any) -> Sensor:
    """Change a sensor's registry fields (room given as `room_name`); sends `sensor_events`."""
    with transaction.atomic(using=DB):
        if "room_name" in changes:
            room_name = changes.pop("room_name")
            sensor.room = Room.objects.get(name=room_name) if room_name else None
        for field, value in changes.items():
            setattr(sensor, field, value)
        sensor.full_clean()
        sensor.save()
        _sensor_event(sensor, "updated")
    analytics_cache.registry_changed()  # a sensor's series is found by its sensor_id
    return sensor


def sensor_delete(*, sensor: Sensor) -> None:
    """Remove a sensor, its readings and aggregates; sends `sensor_events` (deleted).

    The sensor's row is locked first: that waits for every ingest holding it (see
    storage.touch_sensors) to commit, and an ingest that comes later finds the sensor gone and
    rolls back, so the readings deleted next are all there are. The readings table has no
    database foreign key to do this (ADR 0006).
    """
    with transaction.atomic(using=DB):
        if not list(Sensor.objects.using(DB).select_for_update().filter(pk=sensor.pk).values_list("pk")):
            return  # deleted meanwhile
        _sensor_event(sensor, "deleted")
        sensor.delete(using=DB)
    analytics_cache.registry_changed()


def room_update(*, room: Room, **changes: Any) -> Room:
    """Change a room's descriptive fields."""
    for field, value in changes.items():
        setattr(room, field, value)
    room.full_clean()
    room.save()
    analytics_cache.registry_changed()  # a room's series is found by its name
    return room


def room_delete(*, room: Room) -> None:
    """Delete a room; its sensors stay registered, with no room."""
    room.delete()
    analytics_cache.registry_changed()


def sensors_list() -> list[dict[str, Any]]:
    """Every sensor's key, kind, room and external id (for other modules and commands)."""
    return list(
        Sensor.objects.order_by("sensor_id").values(
            "sensor_id", "kind", "room__name", "external_id", "status"
        )
    )


def room_names() -> list[str]:
    """Every room's name, sorted."""
    return list(Room.objects.order_by("name").values_list("name", flat=True))


def readings_ingest(
    *,
    readings: Sequence[Any],
    source: str = "api",
    sensor_id: str | None = None,
    announce: bool = True,
) -> IngestResult:
    """Validate, convert and store a batch of readings; the one way readings enter.

    Each item is ``{sensor_id, metric, timestamp, value, unit?, quality?}`` (``sensor_id``
    may come from `sensor_id` instead). Points already stored are skipped (a differing value
    is counted as a conflict, the stored one kept). All new points commit together; then
    `energy_data` is sent once for the batch, unless `announce` is False: bulk imports of
    history (a meter file of millions of readings in one transaction) announce themselves
    instead of holding every reading in memory until their commit to push it live.
    """
    try:
        return _ingest_batch(readings, source, sensor_id, announce)
    except storage.SensorsGone:
        # A sensor was deleted while the batch was stored, and the batch rolled back (events
        # included). Once more: its points are now refused as readings of an unknown sensor.
        return _ingest_batch(readings, source, sensor_id, announce)


def _ingest_batch(
    readings: Sequence[Any], source: str, sensor_id: str | None, announce: bool
) -> IngestResult:
    with gc_paused(), transaction.atomic(using=DB):
        outcome = _store_items(readings, sensor_id)
        if outcome.inserted and announce:
            send_on_commit(energy_data, sender=Reading, using=DB, source=source, readings=_Announced(outcome))
        # Last, so the sensors' rows are locked only for the commit: concurrent batches of the
        # same sensors do not queue behind each other's whole ingest. Also when nothing new was
        # stored: a register's first value still writes the sensor's counter state.
        for sensor in storage.touch_sensors(outcome.sensors, outcome.inserted):
            _sensor_event(sensor, "recovered")
    return outcome.result


def _store_items(items: Sequence[Any], default_sensor: str | None) -> Outcome:
    """Validate and store a batch of items; the caller holds the transaction."""
    sensors = storage.sensor_refs(rules.named_sensors(items, default_sensor))
    batch = rules.validate(items, sensors, default_sensor=default_sensor)
    rejected = batch.rejected
    points = batch.points
    counter_bases = counter_repeats = 0
    if batch.counters:
        intervals, counter_bases, counter_repeats = storage.counters_to_intervals(batch.counters, rejected)
        points = points + intervals
    written = storage.write(points)
    result: IngestResult = {
        "accepted": len(written.inserted) + counter_bases,
        "duplicates": _duplicates(points, written) + counter_repeats,
        "conflicts": written.repeat_conflicts + written.conflicts,
        "rejected": sorted(rejected, key=lambda r: r["index"]),
    }
    return Outcome(result, written.inserted, {s.pk: s for s in sensors.values()})


def readings_import(*, rows: Sequence[TypedRow], source: str = "import") -> IngestResult:
    """Store readings a trusted parser has already typed (sensor_id, metric, aware timestamp,
    value in the canonical unit, estimated): the bulk path for history such as meter files.

    The same guarantees as `readings_ingest` (the same rules, with the same reasons: see
    `sensors.rules.check_rows`; duplicates skipped, conflicts counted, dirty marks for the
    rollups, last_seen) without per-item parsing, and without `energy_data`: an import
    announces itself (see `readings_ingest`'s `announce`).
    """
    # No savepoint of its own: inside a caller's transaction (a meter file is one) any error
    # fails the whole import anyway, and PostgreSQL slows down once a transaction holds more
    # than 64 subtransactions (the fast path already takes one per call).
    with gc_paused(), transaction.atomic(using=DB, savepoint=False):
        outcome = _store_rows(rows)
        # Also locks the sensors (storage.touch_sensors): a meter deleted meanwhile raises
        # SensorsGone, which fails the caller's whole import; its file can be processed again.
        for sensor in storage.touch_sensors(outcome.sensors, outcome.inserted):
            _sensor_event(sensor, "recovered")
    return outcome.result


def _store_rows(rows: Sequence[TypedRow]) -> Outcome:
    """Check and store typed rows; the caller holds the transaction."""
    sensors = storage.sensor_refs(sorted({row[0] for row in rows}))
    batch = rules.check_rows(rows, sensors)
    written = storage.write(batch.points)
    result: IngestResult = {
        "accepted": len(written.inserted),
        "duplicates": _duplicates(batch.points, written),
        "conflicts": written.repeat_conflicts + written.conflicts,
        "rejected": batch.rejected,
    }
    return Outcome(result, written.inserted, {ref.pk: ref for ref in sensors.values()})


def _duplicates(points: list[Point], written: Written) -> int:
    """Points left out as already there with the same value: repeats inside the batch, and
    points stored before (those not inserted and not conflicting)."""
    unique = len(points) - written.repeats - written.repeat_conflicts
    return written.repeats + unique - len(written.inserted) - written.conflicts


class _Announced(Sequence[dict[str, Any]]):
    """The `energy_data` payload of a stored batch, built on first use: the live feed reads it
    only when some client follows the batch's groups, and names the groups from `rooms`
    (a 5,000-reading batch is 5,000 dicts, for nobody when nobody watches)."""

    def __init__(self, outcome: Outcome) -> None:
        self._outcome = outcome
        self._items: list[dict[str, Any]] | None = None

    @property
    def rooms(self) -> set[str]:
        """The names of the rooms of the batch's sensors."""
        sensors = self._outcome.sensors
        rooms = (sensors[pk].room for pk in {row[0] for row in self._outcome.inserted})
        return {room.name for room in rooms if room is not None}

    def __len__(self) -> int:
        return len(self._outcome.inserted)

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...
    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        return self._built()[index]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self._built())

    def _built(self) -> list[dict[str, Any]]:
        if self._items is None:
            self._items = _announced(self._outcome)
        return self._items


def _announced(outcome: Outcome) -> list[dict[str, Any]]:
    """The `energy_data` payload of a stored batch; each timestamp and sensor is formatted once
    (a 5,000-reading batch has a few hundred of each)."""
    stamps: dict[datetime, str] = {}
    who: dict[int, tuple[str, str | None]] = {}
    payload = []
    for pk, metric, moment, value, estimated in outcome.inserted:
        stamp = stamps.get(moment)
        if stamp is None:
            stamp = stamps[moment] = iso_z(moment)
        ident = who.get(pk)
        if ident is None:
            sensor = outcome.sensors[pk]
            ident = who[pk] = (sensor.sensor_id, sensor.room.name if sensor.room_id and sensor.room else None)
        payload.append(
            {
                "sensor_id": ident[0],
                "room": ident[1],
                "metric": metric,
                "timestamp": stamp,
                "value": value,
                "quality": "estimated" if estimated else "measured",
            }
        )
    return payload


def aggregates_compute(*, limit: int = 5_000) -> dict[str, int]:
    """Bring rollups and room metrics up to date with what arrived (incremental, idempotent).

    Pushes each touched room's latest window to the live feed. `skipped` counts the dirty marks
    and days it could not compute with (each logged as a warning; see
    aggregation.recompute_dirty).
    """
    done = aggregation.recompute_dirty(limit=limit)
    analytics_cache.days_changed(done.local_days)
    _publish_latest_room_metrics(done.rooms)
    return {"days": done.days, "marks": done.marks, "rooms": len(done.rooms), "skipped": done.skipped}


def _publish_latest_room_metrics(room_pks: set[int]) -> None:
    if not room_pks:
        return
    latest = (
        RoomMetrics.objects.filter(room_id__in=room_pks).order_by("room_id", "-bucket").select_related("room")
    )
    seen: set[int] = set()
    for metrics in latest:
        if metrics.room_id in seen:
            continue
        seen.add(metrics.room_id)
        live.publish(room_metrics_payload(metrics), rooms=[metrics.room.name])


def room_metrics_payload(metrics: RoomMetrics) -> dict[str, Any]:
    """A room's 5-minute figures as the live feed and the API show them."""
    return {
        "type": "room_metrics",
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
    incremental job would write for those readings. Pushes each touched room's latest window.
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
                count, _ = queryset.model.objects.filter(pk__in=queryset.values("pk")[:batch_size]).delete()
            deleted[name] += count
            if count < batch_size:
                break
    return deleted


def _retention_cutoff(now: datetime, days: int) -> datetime | None:
    """`now` less `days`, or None when that is before the horizon (nothing is that old)."""
    if days > (now - EARLIEST).days:
        return None
    return now - timedelta(days=days)


def sensors_mark_stale() -> dict[str, int]:
    """Mark active sensors stale after SENSOR_STALE_FACTOR expected intervals without data;
    send `sensor_events` (stale) for each. They recover when data returns (readings_ingest).

    A sensor whose expected interval is outside 1..MAX_EXPECTED_INTERVAL_S (written before the
    bound, or straight to the database) is skipped with a warning and counted in `skipped`:
    2^63-1 seconds overflowed the timedelta and stopped the job for every sensor."""
    now = timezone.now()
    candidates: list[Sensor] = []
    skipped = 0
    for sensor in Sensor.objects.filter(status=Sensor.Status.ACTIVE).select_related("room"):
        if not 1 <= sensor.expected_interval_s <= MAX_EXPECTED_INTERVAL_S:
            logger.warning(
                "stale sensors: skipped sensor %s, whose expected_interval_s %s is outside 1..%s",
                sensor.sensor_id,
                sensor.expected_interval_s,
                MAX_EXPECTED_INTERVAL_S,
            )
            skipped += 1
            continue
        if now - (sensor.last_seen or sensor.created_at) > stale_after(sensor.expected_interval_s):
            candidates.append(sensor)
    marked = 0
    with transaction.atomic(using=DB):
        for sensor in candidates:
            # Compare-and-swap: only if still active (data may have arrived meanwhile).
            if Sensor.objects.filter(pk=sensor.pk, status=Sensor.Status.ACTIVE).update(
                status=Sensor.Status.STALE
            ):
                sensor.status = Sensor.Status.STALE
                _sensor_event(sensor, "stale")
                marked += 1
    return {"stale": marked, "skipped": skipped}


def stale_after(expected_interval_s: int) -> timedelta:
    """How long a sensor may be silent before it is stale: SENSOR_STALE_FACTOR of its expected
    interval, the interval taken at most MAX_EXPECTED_INTERVAL_S (so always computable)."""
    return timedelta(seconds=min(expected_interval_s, MAX_EXPECTED_INTERVAL_S) * settings.SENSOR_STALE_FACTOR)


# --- Reads: re-exported from sensors.analytics for views and other modules -----------------

analytics_summary = analytics.summary
analytics_summary_json = analytics.summary_json
energy_per_interval = analytics.energy_per_interval
energy_report = analytics.energy_report
energy_report_json = analytics.energy_report_json
energy_rows = analytics.energy_rows
data_query = analytics.query_rows
room_latest = analytics.room_latest
latest_value = analytics.latest_value
default_metric = analytics.DEFAULT_METRIC


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
    """One sensor's points: raw readings or rollup buckets, oldest first, keyset-paginated."""
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
    """`sensor_series` as rows read from the database in chunks while they are consumed (an
    export streams its range); every row when `limit` is None."""
    if resolution == "raw":
        return analytics.raw_series(
            sensor=sensor, metric=metric, start=start, end=end, after=after, limit=limit
        )
    return analytics.rollup_series(
        sensor=sensor, metric=metric, resolution=resolution, start=start, end=end, after=after, limit=limit
    )


def simulate(
    *, sensor_ids: list[str] | None = None, start: datetime, end: datetime, step_s: float, seed: int = 0
) -> dict[str, int]:
    """Ingest synthetic readings for the chosen sensors (default: every active sensor in a room)
    at each step in [start, end), one batch per instant, through readings_ingest."""
    sensors = Sensor.objects.select_related("room").filter(status=Sensor.Status.ACTIVE, room__isnull=False)
    if sensor_ids:
        sensors = sensors.filter(sensor_id__in=sensor_ids)
    chosen = list(sensors)
    rng = random.Random(seed)  # noqa: S311 (synthetic data, not security)
    totals = {"batches": 0, "accepted": 0}
    for moment in simulation.instants(start, end, timedelta(seconds=step_s)):
        result = readings_ingest(readings=simulation.batch(chosen, moment, step_s, rng), source="simulator")
        totals["batches"] += 1
        totals["accepted"] += result["accepted"]
    return totals


def overview() -> dict[str, Any]:
    """Counts for the platform overview."""
    return {
        "rooms": Room.objects.count(),
        "sensors": Sensor.objects.count(),
        "sensors_by_status": {
            row["status"]: row["n"]
            for row in Sensor.objects.values("status").annotate(n=Count("id")).order_by()
        },
    }


# The demo building: rooms with their sensors, each room with the same five kinds.
DEMO_ROOMS: list[tuple[str, str, str, float, int]] = [
    ("lobby", "Lobby", "0", 120.0, 40),
    ("office-101", "Office 101", "1", 45.0, 8),
    ("office-102", "Office 102", "1", 45.0, 8),
    ("meeting-201", "Meeting room 201", "2", 30.0, 12),
    ("server-room", "Server room", "-1", 20.0, 2),
]
DEMO_KINDS = [
    Sensor.Kind.ENERGY_METER,
    Sensor.Kind.POWER,
    Sensor.Kind.CO2,
    Sensor.Kind.TEMPERATURE,
    Sensor.Kind.HUMIDITY,
]


def demo_load() -> dict[str, int]:
    """Create the demo building's rooms and sensors (idempotent); returns what exists."""
    with transaction.atomic(using=DB):
        for name, display, floor, area, capacity in DEMO_ROOMS:
            room_create(name=name, display_name=display, floor=floor, area_m2=area, capacity=capacity)
            for kind in DEMO_KINDS:
                sensor_register(
                    sensor_id=f"{name}-{kind.value.replace('_', '-')}",
                    kind=kind.value,
                    name=f"{display} {kind.label.lower()}",
                    room_name=name,
                    expected_interval_s=60,
                )
    return {"rooms": Room.objects.count(), "sensors": Sensor.objects.count()}


# --- for ingestion ---


def readings_transaction() -> Any:
    """A transaction on the readings store: every `readings_ingest` inside it commits together
    or not at all (a meter file is imported whole), and their `energy_data` events are sent
    only after it commits."""
    return transaction.atomic(using=DB)


def meters_for_external_ids(*, external_ids: Sequence[str], source: str = "ingestion") -> dict[str, str]:
    """The sensor_id of the energy meter of each external id (a meter's CPE), registering a
    meter with no room for each id seen for the first time (for an operator to assign).

    Returns {external_id: sensor_id}. New sensors get the id ``cpe-<external id, lowercased>``
    and send `sensor_events` (registered) after commit. ValueError when that id is taken by a
    sensor with another external id.
    """
    wanted = sorted(set(external_ids))
    with transaction.atomic(using=DB):
        known = _meters(wanted)
        new = [external_id for external_id in wanted if external_id not in known]
        for sensor in storage.sensors_insert([_new_meter(external_id, source) for external_id in new]):
            _sensor_event(sensor, "registered")
            known[sensor.external_id] = sensor.sensor_id  # type: ignore[index]
        # Not created here: registered meanwhile by another import, or the id is taken.
        if missing := [external_id for external_id in new if external_id not in known]:
            known.update(_meters(missing))
        for external_id in missing:
            if external_id not in known:
                taken = Sensor.objects.get(sensor_id=_meter_id(external_id))
                raise ValueError(
                    f"sensor {taken.sensor_id} already exists with external id {taken.external_id!r}, "
                    f"not {external_id!r}"
                )
    return known


def _meter_id(external_id: str) -> str:
    return f"cpe-{external_id.lower()}"


def _meters(external_ids: Sequence[str]) -> dict[str, str]:
    return dict(Sensor.objects.filter(external_id__in=external_ids).values_list("external_id", "sensor_id"))


def _new_meter(external_id: str, source: str) -> Sensor:
    """The sensor an import registers for a meter it has not seen: no room, a quarter-hour
    interval, and who registered it."""
    return Sensor(
        sensor_id=_meter_id(external_id),
        kind=Sensor.Kind.ENERGY_METER,
        name=f"Meter {external_id}",
        external_id=external_id,
        expected_interval_s=900,
        metadata={"registered_by": source},
    )


# --- reads for demand_response ---


def sensors_known(*, sensor_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The registered sensors among `sensor_ids`: sensor_id -> {kind, room, status}."""
    return {
        row["sensor_id"]: {"kind": row["kind"], "room": row["room__name"], "status": row["status"]}
        for row in Sensor.objects.filter(sensor_id__in=list(sensor_ids)).values(
            "sensor_id", "kind", "room__name", "status"
        )
    }


def power_latest(*, sensor_ids: Sequence[str]) -> dict[str, tuple[datetime, float]]:
    """Each sensor's newest power reading, whatever its age: sensor_id -> (timestamp, W).

    One query however many sensors (a correlated subquery per column, served by the readings'
    (sensor, metric, timestamp) index); sensors without a power reading are absent.
    """
    from django.db.models import OuterRef, Subquery

    from sensors.models import Metric

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
    from sensors.models import Metric

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
