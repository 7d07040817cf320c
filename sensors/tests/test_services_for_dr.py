"""The reads sensors.services offers the demand-response module."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connections

from sensors import services

pytestmark = pytest.mark.django_db(databases="__all__")

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


@pytest.fixture
def meters() -> None:
    services.room_create(name="plant")
    services.sensor_register(sensor_id="p1", kind="power", room_name="plant")
    services.sensor_register(sensor_id="p2", kind="power")
    services.sensor_register(sensor_id="e1", kind="energy_meter", room_name="plant")
    services.readings_ingest(
        readings=[
            {
                "sensor_id": "p1",
                "metric": "power",
                "timestamp": (T0 + timedelta(minutes=m)).isoformat(),
                "value": v,
            }
            for m, v in [(0, 1000), (5, 3000), (20, 5000)]
        ]
        + [
            {
                "sensor_id": "e1",
                "metric": "energy",
                "timestamp": (T0 + timedelta(minutes=m)).isoformat(),
                "value": 0.5,
            }
            for m in (0, 5, 10)
        ]
    )


@pytest.mark.usefixtures("meters")
def test_sensors_known_lists_only_registered_ones() -> None:
    assert services.sensors_known(sensor_ids=["p1", "p2", "ghost"]) == {
        "p1": {"kind": "power", "room": "plant", "status": "active"},
        "p2": {"kind": "power", "room": None, "status": "active"},
    }


@pytest.mark.usefixtures("meters")
def test_power_latest_is_the_newest_reading_in_one_query(django_assert_num_queries: Any) -> None:
    with django_assert_num_queries(1, connection=connections["sensors"]):
        latest = services.power_latest(sensor_ids=["p1", "p2", "e1"])
    assert latest == {"p1": (T0 + timedelta(minutes=20), 5000.0)}


@pytest.mark.usefixtures("meters")
def test_quarter_hour_load_from_power_means_and_interval_energy() -> None:
    services.rollups_backfill(since=T0, until=T0 + timedelta(hours=1))
    load = services.load_kw_quarter_hours(
        sensor_ids=["p1", "e1", "p2"], start=T0, end=T0 + timedelta(hours=1)
    )
    assert load == {
        "p1": {T0: 2.0, T0 + timedelta(minutes=15): 5.0},  # mean W / 1000
        "e1": {T0: 6.0},  # 1.5 kWh in 15 minutes = 6 kW
        "p2": {},
    }
