"""The registry: rooms and sensors, their changes and their status (stale, recovered), and the
energy meters that imports register."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from energy_dashboard.core.events import send_on_commit, sensor_events
from sensors import analytics_cache, storage
from sensors.models import MAX_EXPECTED_INTERVAL_S, Room, Sensor, validate_part_of
from sensors.storage import SensorRef

logger = logging.getLogger(__name__)

DB = "sensors"


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


def room_names() -> list[str]:
    """Every room's name, sorted."""
    return list(Room.objects.order_by("name").values_list("name", flat=True))


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
    part_of: str | None = None,
) -> Sensor:
    """Register a sensor if its id is new; send `sensor_events` (registered) when it was.

    `part_of`: the sensor_id of the meter this one is a sub-meter of (Sensor.DoesNotExist when
    unknown; ValidationError when the hierarchy refuses it, see sensors.models.validate_part_of).
    """
    with transaction.atomic(using=DB):
        room = Room.objects.get(name=room_name) if room_name else None
        parent = Sensor.objects.get(sensor_id=part_of) if part_of else None
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
                "part_of": parent,
            },
        )
        if created:
            if parent is not None:
                validate_part_of(sensor, parent)  # rolls the registration back when refused
            sensor_event_send(sensor, "registered")
    if created and parent is not None:
        analytics_cache.registry_changed()  # totals now leave the sub-meter out
    return sensor


def sensor_event_send(sensor: Sensor | SensorRef, event: str) -> None:
    """Send `sensor_events` for a sensor after the registry's transaction commits."""
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
    """Change a sensor's registry fields (room given as `room_name`, the meter it is part of
    as `part_of`, a sensor_id or None); sends `sensor_events`."""
    with transaction.atomic(using=DB):
        if "room_name" in changes:
            room_name = changes.pop("room_name")
            sensor.room = Room.objects.get(name=room_name) if room_name else None
        if "part_of" in changes:
            parent = changes.pop("part_of")
            sensor.part_of = Sensor.objects.get(sensor_id=parent) if parent else None
        for field, value in changes.items():
            setattr(sensor, field, value)
        sensor.full_clean()
        sensor.save()
        sensor_event_send(sensor, "updated")
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
        sensor_event_send(sensor, "deleted")
        sensor.delete(using=DB)
    analytics_cache.registry_changed()


def sensors_list() -> list[Mapping[str, Any]]:
    """Every sensor's key, kind, room and external id (for other modules and commands)."""
    return list(
        Sensor.objects.order_by("sensor_id").values(
            "sensor_id", "kind", "room__name", "external_id", "status"
        )
    )


def sensors_known(*, sensor_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The registered sensors among `sensor_ids`: sensor_id -> {kind, room, status}."""
    return {
        row["sensor_id"]: {"kind": row["kind"], "room": row["room__name"], "status": row["status"]}
        for row in Sensor.objects.filter(sensor_id__in=list(sensor_ids)).values(
            "sensor_id", "kind", "room__name", "status"
        )
    }


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
                sensor_event_send(sensor, "stale")
                marked += 1
    return {"stale": marked, "skipped": skipped}


def stale_after(expected_interval_s: int) -> timedelta:
    """How long a sensor may be silent before it is stale: SENSOR_STALE_FACTOR of its expected
    interval, the interval taken at most MAX_EXPECTED_INTERVAL_S (so always computable)."""
    return timedelta(seconds=min(expected_interval_s, MAX_EXPECTED_INTERVAL_S) * settings.SENSOR_STALE_FACTOR)


# --- Energy meters, registered by imports ---------------------------------------------------


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
            sensor_event_send(sensor, "registered")
            assert sensor.external_id is not None  # _new_meter gave it one
            known[sensor.external_id] = sensor.sensor_id
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


def _meters(external_ids: Sequence[str]) -> dict[str, str]:
    rows = Sensor.objects.filter(external_id__in=external_ids).values_list("external_id", "sensor_id")
    # `external_id__in` matches no NULL: every key is a string.
    return {external_id: sensor_id for external_id, sensor_id in rows if external_id is not None}
