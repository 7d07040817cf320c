"""The demo building and its synthetic readings: rooms and sensors to start from, and readings
through the same path as any client's (`readings_ingest`)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from django.db import transaction

from sensors import simulation
from sensors.models import Room, Sensor
from sensors.services.readings import readings_ingest
from sensors.services.registry import room_create, sensor_register

DB = "sensors"

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
