"""The live feed's receivers on the event bus: each topic the dashboard shows becomes a message
to the browsers that follow it.

Everything a message needs (a reading's room, a sensor's status) comes in the topic's keyword
arguments (energy_dashboard/core/events.py): the feed imports no module. A message that names a room
is published to that room's group and to the all-group; one that names no room and no sensor
(`dr_event`, `ingestion`) reaches followers of everything only (see `consumers.LiveConsumer`).
"""

from __future__ import annotations

import logging
from typing import Any

from django.dispatch import receiver

from energy_dashboard.core import events
from energy_dashboard.live import groups

logger = logging.getLogger(__name__)


@receiver(events.sensor_events, dispatch_uid="live.sensor_events")
def forward_sensor_event(
    sender: Any, *, sensor_id: str, event: str, status: str, room: str | None = None, **kwargs: Any
) -> None:
    """Push a sensor's status change to its followers."""
    groups.publish(
        {"type": "sensor_status", "sensor_id": sensor_id, "event": event, "status": status, "room": room},
        rooms=[room] if room else [],
    )


@receiver(events.energy_data, dispatch_uid="live.energy_data")
def forward_readings(sender: Any, *, readings: list[dict[str, Any]], source: str = "", **kwargs: Any) -> None:
    """Push a stored batch to the live feed: one message per group, each with its readings."""
    groups.publish_readings(readings)


@receiver(events.room_metrics, dispatch_uid="live.room_metrics")
def forward_room_metrics(
    sender: Any,
    *,
    room: str,
    bucket: str,
    energy_kwh: float | None = None,
    power_w: float | None = None,
    co2_ppm: float | None = None,
    temperature_c: float | None = None,
    humidity_pct: float | None = None,
    occupancy: float | None = None,
    sensors_reporting: int = 0,
    **kwargs: Any,
) -> None:
    """Push a room's newest 5-minute figures to its followers."""
    groups.publish(
        {
            "type": "room_metrics",
            "room": room,
            "bucket": bucket,
            "energy_kwh": energy_kwh,
            "power_w": power_w,
            "co2_ppm": co2_ppm,
            "temperature_c": temperature_c,
            "humidity_pct": humidity_pct,
            "occupancy": occupancy,
            "sensors_reporting": sensors_reporting,
        },
        rooms=[room],
    )


@receiver(events.dr_events, dispatch_uid="live.dr_events")
def forward_dr_event(
    sender: Any,
    *,
    kind: str,
    id: int,
    status: str,
    previous_status: str | None = None,
    detail: dict[str, Any] | None = None,
    **kwargs: Any,
) -> None:
    """Push a demand-response state change to followers of everything."""
    groups.publish(
        {
            "type": "dr_event",
            "kind": kind,
            "id": id,
            "status": status,
            "previous_status": previous_status,
            "detail": detail or {},
        }
    )


@receiver(events.data_ingestion, dispatch_uid="live.data_ingestion")
def forward_ingestion(
    sender: Any,
    *,
    file_id: int,
    name: str,
    status: str,
    source: str | None = None,
    counts: dict[str, int] | None = None,
    **kwargs: Any,
) -> None:
    """Push a processed meter file's outcome to followers of everything."""
    groups.publish(
        {
            "type": "ingestion",
            "file_id": file_id,
            "name": name,
            "status": status,
            "source": source,
            "counts": counts or {},
        }
    )
