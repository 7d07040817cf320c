"""Readings in: a batch of items (API, CSV files, the simulator) or of typed rows (meter files),
checked by `sensors.rules`, stored by `sensors.storage`, announced on the bus."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict, overload

from django.db import transaction

from energy_dashboard.core.batch import gc_paused
from energy_dashboard.core.clock import iso_z
from energy_dashboard.core.events import energy_data, send_on_commit
from sensors import rules, storage
from sensors.models import Reading
from sensors.rules import Point, Rejection, TypedRow
from sensors.services.registry import sensor_event_send
from sensors.storage import Row, SensorRef, Written

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
            sensor_event_send(sensor, "recovered")
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
            sensor_event_send(sensor, "recovered")
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


def readings_transaction() -> Any:
    """A transaction on the readings store: every `readings_ingest` inside it commits together
    or not at all (a meter file is imported whole), and their `energy_data` events are sent
    only after it commits."""
    return transaction.atomic(using=DB)


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
