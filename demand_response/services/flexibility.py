"""Flexibility: the kW each device can shed now or over a window, and why none when none (for
the API, an acceptance, the policy and an event's dispatch at its start); and the commitment
that covers a target from it (an acceptance's, by an operator or the policy).

Which devices another event takes is the models' rule (`EventDevice.objects.overlapping` over a
window, `.holding_at` now), the same one a new event's claim on its devices obeys.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings

from demand_response.models import EventDevice, FlexibleDevice, utc
from demand_response.services._common import EPSILON_KW, describe, iso_z, or_now
from sensors import services as sensors_services


@dataclass(frozen=True)
class DeviceFlexibility:
    """What one device can shed, and why nothing when nothing."""

    device: str
    sensor_id: str
    category: str
    priority: int
    current_kw: float | None
    reading_at: datetime | None
    flexible_kw: float
    reason: str | None  # None when flexible_kw > 0
    # Its stored settings are out of bounds (a row written around the validation): no
    # flexibility, and the jobs report it.
    out_of_bounds: bool = False


@dataclass(frozen=True)
class Flexibility:
    """The flexibility of a set of devices now, or over a window."""

    at: datetime
    start: datetime | None
    end: datetime | None
    devices: list[DeviceFlexibility]

    @property
    def total_kw(self) -> float:
        """The building's total: the sum over the devices."""
        return math.fsum(d.flexible_kw for d in self.devices)

    def as_dict(self) -> dict[str, Any]:
        """The API's shape."""
        return {
            "at": iso_z(self.at),
            "start": iso_z(self.start),
            "end": iso_z(self.end),
            "total_kw": round(self.total_kw, 3),
            "devices": [
                {
                    "device": d.device,
                    "sensor_id": d.sensor_id,
                    "category": d.category,
                    "priority": d.priority,
                    "current_kw": None if d.current_kw is None else round(d.current_kw, 3),
                    "reading_at": iso_z(d.reading_at),
                    "flexible_kw": round(d.flexible_kw, 3),
                    "reason": d.reason,
                }
                for d in self.devices
            ],
        }


def _shed_limit(device: FlexibleDevice, current_kw: float) -> float:
    limits = [current_kw]
    if device.max_shed_kw is not None:
        limits.append(device.max_shed_kw)
    if device.max_shed_share is not None:
        limits.append(device.max_shed_share * current_kw)
    return max(min(limits), 0.0)


def flexibility_compute(
    *,
    now: datetime | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    devices: Sequence[FlexibleDevice] | None = None,
    exclude_event: int | None = None,
    latest: Mapping[str, tuple[datetime, float]] | None = None,
) -> Flexibility:
    """The kW each device can shed now (or over [start, end)) and why zero when zero.

    Now: from the device's latest power reading and its limits; a reading older than
    DR_READING_MAX_AGE, or none, is no flexibility, and neither is a device an event holds now
    (it may be shedding already). A window: the latest reading stands for the window (no
    forecast), the window's length must fit the device's minimum and maximum event length, and
    a device taken by another open event in the window has none. `exclude_event` is the event
    asking (its own devices are not taken from it).
    """
    now = or_now(now)
    chosen = list(devices) if devices is not None else list(FlexibleDevice.objects.all())
    if latest is None:  # callers answering many invitations at once read the readings once
        latest = sensors_services.power_latest(sensor_ids=sorted({d.sensor_id for d in chosen}))
    max_age = timedelta(seconds=settings.DR_READING_MAX_AGE)
    minutes: float | None = None
    if start is not None and end is not None:
        busy = EventDevice.objects.overlapping(start, end).taken((d.pk for d in chosen), exclude_event)
        minutes = (utc(end) - utc(start)).total_seconds() / 60
    else:
        busy = EventDevice.objects.holding_at(now).taken((d.pk for d in chosen), exclude_event)
    out: list[DeviceFlexibility] = []
    for device in sorted(chosen, key=lambda d: (d.priority, d.name)):
        reading = latest.get(device.sensor_id)
        current_kw = None if reading is None else reading[1] / 1000.0
        reason = _unavailable(device, reading, now=now, max_age=max_age, minutes=minutes, busy=busy)
        kw = 0.0
        if reason is None:
            assert current_kw is not None
            kw = _shed_limit(device, current_kw)
            if kw <= 0:
                reason = f"no load to shed ({current_kw:.3f} kW)"
        out.append(
            DeviceFlexibility(
                device=device.name,
                sensor_id=device.sensor_id,
                category=device.category,
                priority=device.priority,
                current_kw=current_kw,
                reading_at=None if reading is None else reading[0],
                flexible_kw=kw,
                reason=reason,
                out_of_bounds=bool(device.enabled and device.out_of_bounds),
            )
        )
    return Flexibility(at=now, start=start, end=end, devices=out)


def _unavailable(  # noqa: PLR0911 (one return per reason, in the order they are reported)
    device: FlexibleDevice,
    reading: tuple[datetime, float] | None,
    *,
    now: datetime,
    max_age: timedelta,
    minutes: float | None,
    busy: Mapping[int, int],
) -> str | None:
    """Why the device has no flexibility whatever its load, or None."""
    if not device.enabled:
        return "disabled"
    if device.out_of_bounds:
        return f"settings out of bounds: {describe(device.out_of_bounds)}"
    if reading is None:
        return "no reading"
    if now - reading[0] > max_age:
        return f"reading {int((now - reading[0]).total_seconds() // 60)} min old"
    if minutes is not None and minutes < device.min_event_minutes:
        return f"the window is shorter than the device's minimum of {device.min_event_minutes} min"
    if minutes is not None and device.max_event_minutes is not None and minutes > device.max_event_minutes:
        return f"the window is longer than the device's maximum of {device.max_event_minutes} min"
    if device.pk in busy:
        return f"committed to event {busy[device.pk]}"
    return None


def plan_commitment(flexibility: Flexibility, target_kw: float) -> list[dict[str, Any]]:
    """Devices in priority order, each taking what it can, until the target is covered: the
    commitment of an acceptance (by an operator or the policy)."""
    plan: list[dict[str, Any]] = []
    remaining = target_kw
    for device in flexibility.devices:
        if remaining <= EPSILON_KW:
            break
        if device.flexible_kw <= 0:
            continue
        kw = min(device.flexible_kw, remaining)
        plan.append({"device": device.device, "kw": round(kw, 6)})
        remaining -= kw
    return plan
