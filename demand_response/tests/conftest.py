"""Fixtures of the demand-response tests: a plant room with three metered flexible loads."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from demand_response import services
from demand_response.models import FlexibleDevice
from sensors import services as sensors_services


def power(sensor_id: str, kw: float, at: datetime) -> None:
    """Store one power reading (the sensors module takes W)."""
    result = sensors_services.readings_ingest(
        readings=[
            {"sensor_id": sensor_id, "metric": "power", "timestamp": at.isoformat(), "value": kw * 1000}
        ]
    )
    assert result["accepted"] == 1, result


def history(*, ahu_kw: Callable[[datetime], float], ev_kw: float, until: datetime) -> None:
    """One power reading per quarter-hour and sensor (ahu, ev) from 1 June 2025, rolled up."""
    start = datetime(2025, 6, 1, tzinfo=UTC)
    batch = []
    moment = start
    while moment < until:
        for sensor_id, kw in (("ahu-power", ahu_kw(moment)), ("ev-power", ev_kw)):
            batch.append(
                {
                    "sensor_id": sensor_id,
                    "metric": "power",
                    "timestamp": moment.isoformat(),
                    "value": kw * 1000,
                }
            )
        moment += timedelta(minutes=15)
    assert sensors_services.readings_ingest(readings=batch)["accepted"] == len(batch)
    sensors_services.rollups_backfill(since=start, until=until)


@pytest.fixture
def plant() -> dict[str, FlexibleDevice]:
    """ahu (priority 1, <= 30 kW), ev (priority 2, <= half its load), lights (priority 3, <= 5 kW)."""
    sensors_services.room_create(name="plant")
    for sensor_id in ("ahu-power", "ev-power", "lights-power"):
        sensors_services.sensor_register(sensor_id=sensor_id, kind="power", room_name="plant")
    return {
        "ahu": services.device_create(
            name="ahu", sensor_id="ahu-power", category="hvac", max_shed_kw=30, priority=1
        ),
        "ev": services.device_create(
            name="ev", sensor_id="ev-power", category="ev_charger", max_shed_share=0.5, priority=2
        ),
        "lights": services.device_create(
            name="lights", sensor_id="lights-power", category="lighting", max_shed_kw=5, priority=3
        ),
    }


@pytest.fixture
def loads(plant: dict[str, FlexibleDevice]) -> datetime:
    """Fresh readings a minute old: ahu 40 kW, ev 20 kW, lights 8 kW (flexible 30 + 10 + 5)."""
    at = timezone.now() - timedelta(minutes=1)
    power("ahu-power", 40, at)
    power("ev-power", 20, at)
    power("lights-power", 8, at)
    return at


@pytest.fixture
def dr_events() -> Iterator[list[dict[str, Any]]]:
    """Every dr_events signal sent during the test (once its transaction committed)."""
    from energy_dashboard.core import events

    seen: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        kwargs.pop("signal", None)
        seen.append(kwargs)

    events.dr_events.connect(receiver, dispatch_uid="dr-tests")
    yield seen
    events.dr_events.disconnect(dispatch_uid="dr-tests")


@pytest.fixture
def committed(django_capture_on_commit_callbacks: Any) -> Callable[..., Any]:
    """Run a call and then its on-commit callbacks (signals), as a real commit would."""

    def run(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        with django_capture_on_commit_callbacks(execute=True, using="demand_response"):
            return call(*args, **kwargs)

    return run
