"""Realistic synthetic readings for the demo building: daily and weekly curves per room and kind.

Deterministic for a given sensor and instant (plus bounded noise), so a backfill and the live
simulation agree.
"""

from __future__ import annotations

import math
import random
import zlib
from datetime import datetime, timedelta
from typing import Any

from energy_dashboard.core.clock import building_tz
from sensors.analytics import default_metric
from sensors.models import Metric, Sensor


def _occupancy_share(moment: datetime, seed: int, local: datetime | None = None) -> float:
    """0..1: how full the room is, by the building's clock (weekdays 08-18, a lunch dip);
    `local` is `moment` in the building's zone, when the caller has it already."""
    local = local or moment.astimezone(building_tz())
    hour = local.hour + local.minute / 60.0
    if local.weekday() >= 5:
        return 0.05
    start, end = 8.0 + (seed % 3) * 0.25, 18.0 - (seed % 2) * 0.5
    if not start <= hour <= end:
        return 0.0
    ramp = min(hour - start, end - hour, 1.0)
    lunch = 0.6 if 12.5 <= hour <= 13.5 else 1.0
    return max(0.0, ramp) * lunch


def building_occupancy(moment: datetime, local: datetime | None = None) -> float:
    """0..1: how full the building is (its common loads follow it), by the building's clock."""
    return _occupancy_share(moment, 0, local)


def value_for(
    sensor: Sensor,
    metric: str,
    moment: datetime,
    interval_s: float,
    rng: random.Random,
    *,
    local: datetime | None = None,
) -> float:
    """A plausible value of `metric` for `sensor` at `moment` (energy: the interval starting at
    it). `local`: `moment` in the building's zone, when the caller has it (a history of many
    sensors converts each instant once)."""
    local = local or moment.astimezone(building_tz())
    seed = zlib.crc32(sensor.sensor_id.encode())
    busy = _occupancy_share(moment, seed, local)
    capacity = (sensor.room.capacity if sensor.room and sensor.room.capacity else 8) or 8
    base_w = 150.0 + (seed % 400)
    power = base_w + busy * (120.0 * capacity) + rng.gauss(0, base_w * 0.03)
    hour = local.hour + moment.minute / 60.0
    if metric == Metric.POWER:
        return max(0.0, power)
    if metric == Metric.ENERGY:
        return max(0.0, power) * interval_s / 3600.0 / 1000.0
    if metric == Metric.CO2:
        return 420.0 + busy * (35.0 * capacity + (seed % 200)) + rng.gauss(0, 8)
    if metric == Metric.TEMPERATURE:
        return 19.5 + 1.5 * math.sin((hour - 9.0) / 24.0 * 2 * math.pi) + busy * 1.5 + rng.gauss(0, 0.1)
    if metric == Metric.HUMIDITY:
        return min(
            100.0, max(0.0, 45.0 + 6.0 * math.cos(hour / 24.0 * 2 * math.pi) + busy * 5 + rng.gauss(0, 0.5))
        )
    if metric == Metric.OCCUPANCY:
        return float(round(busy * capacity))
    raise ValueError(metric)


def batch(
    sensors: list[Sensor], moment: datetime, interval_s: float, rng: random.Random
) -> list[dict[str, Any]]:
    """One reading per sensor at `moment`, as readings_ingest takes them: of the metric the API
    shows for its kind by default."""
    stamp = moment.isoformat()
    return [
        {
            "sensor_id": sensor.sensor_id,
            "metric": default_metric[sensor.kind],
            "timestamp": stamp,
            "value": round(value_for(sensor, default_metric[sensor.kind], moment, interval_s, rng), 4),
        }
        for sensor in sensors
    ]


def instants(start: datetime, end: datetime, step: timedelta) -> list[datetime]:
    """start, start+step, ... before end."""
    if step <= timedelta(0):
        raise ValueError("the step must be positive")
    out = []

    moment = start
    while moment < end:
        out.append(moment)
        moment += step
    return out
