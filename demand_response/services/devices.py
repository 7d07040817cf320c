"""Flexible devices: register, change and delete them, each checked against the sensors module
(its sensor and room are that module's keys)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db.models import ProtectedError

from demand_response.models import FlexibleDevice
from demand_response.services._common import DRError, validated
from sensors import services as sensors_services


def device_check_references(
    *, sensor_id: str, room: str = "", unchanged_from: FlexibleDevice | None = None
) -> str:
    """Check a device's sensor and room against the sensors module; returns its room.

    A device in no room takes its sensor's room. A sensor or room equal to `unchanged_from`'s
    (the stored device being changed) is not checked again: a device whose sensor was deleted
    since can still be disabled or edited. Raises DRError naming the field. Public so that
    forms (the admin) refuse before saving, with the same message the API gives.
    """
    keeps_sensor = unchanged_from is not None and sensor_id == unchanged_from.sensor_id
    keeps_room = unchanged_from is not None and room == unchanged_from.room
    known = sensors_services.sensors_known(sensor_ids=[sensor_id])
    if sensor_id not in known and not keeps_sensor:
        raise DRError.on(
            "sensor_id", f"Unknown sensor {sensor_id!r}: register it in the sensors module first."
        )
    sensor_room = (known[sensor_id]["room"] or "") if sensor_id in known else ""
    if room and not keeps_room and room not in sensors_services.room_names():
        raise DRError.on("room", f"Unknown room {room!r}.")
    return room or sensor_room


def device_create(
    *,
    name: str,
    sensor_id: str,
    room: str = "",
    category: str = FlexibleDevice.Category.OTHER,
    max_shed_kw: float | None = None,
    max_shed_share: float | None = None,
    priority: int = 100,
    min_event_minutes: int = 0,
    max_event_minutes: int | None = None,
    enabled: bool = True,
) -> FlexibleDevice:
    """Register a flexible device; its sensor must exist in the sensors module."""
    if FlexibleDevice.objects.filter(name=name).exists():
        raise DRError.on("name", f"A device named {name!r} exists already.")
    device = FlexibleDevice(
        name=name,
        sensor_id=sensor_id,
        room=room,
        category=category,
        max_shed_kw=max_shed_kw,
        max_shed_share=max_shed_share,
        priority=priority,
        min_event_minutes=min_event_minutes,
        max_event_minutes=max_event_minutes,
        enabled=enabled,
    )
    validated(device)
    device.room = device_check_references(sensor_id=sensor_id, room=room)
    device.save()
    return device


def device_update(*, device: FlexibleDevice, **changes: Any) -> FlexibleDevice:
    """Change a device's fields (its name is its key and stays)."""
    if "name" in changes and changes["name"] != device.name:
        raise DRError.on("name", "name is the device's key and cannot change.")
    stored = FlexibleDevice(sensor_id=device.sensor_id, room=device.room)
    for name, value in changes.items():
        setattr(device, name, value)
    validated(device)
    device.room = device_check_references(sensor_id=device.sensor_id, room=device.room, unchanged_from=stored)
    device.save()
    return device


def device_delete(*, device: FlexibleDevice) -> None:
    """Delete a device that no event refers to (otherwise disable it)."""
    try:
        device.delete()
    except ProtectedError as exc:
        raise DRError(f"Device {device.name!r} took part in events; disable it instead.") from exc


def devices_named(names: Sequence[str]) -> list[FlexibleDevice]:
    """The named devices, each once, in the order named; DRError lists the unknown names. For
    an acceptance's or an event's devices."""
    found = {d.name: d for d in FlexibleDevice.objects.filter(name__in=list(names))}
    unknown = [n for n in names if n not in found]
    if unknown:
        raise DRError(f"Unknown devices: {', '.join(unknown)}.")
    return [found[n] for n in dict.fromkeys(names)]
