"""Flexibility: what each device can shed now or over a window, and why zero when zero."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.db import connections
from django.utils import timezone
from rest_framework.test import APIClient

from demand_response import services
from demand_response.models import DREvent, FlexibleDevice
from demand_response.tests.conftest import power

pytestmark = pytest.mark.django_db(databases="__all__")


def by_device(flex: services.Flexibility) -> dict[str, tuple[float, str | None]]:
    return {d.device: (round(d.flexible_kw, 6), d.reason) for d in flex.devices}


def test_now_takes_the_tightest_limit_per_device(loads: datetime) -> None:
    flex = services.flexibility_compute()
    # ahu: min(40 kW load, 30 kW cap); ev: half of 20 kW; lights: min(8, 5).
    assert by_device(flex) == {"ahu": (30.0, None), "ev": (10.0, None), "lights": (5.0, None)}
    assert flex.total_kw == pytest.approx(45.0)
    assert [d.device for d in flex.devices] == ["ahu", "ev", "lights"]  # priority order


def test_missing_stale_and_disabled_count_as_nothing_and_say_why(plant: dict[str, FlexibleDevice]) -> None:
    now = timezone.now()
    power("ahu-power", 40, now - timedelta(minutes=20, seconds=5))
    power("ev-power", 20, now - timedelta(minutes=1))
    services.device_update(device=plant["ev"], enabled=False)
    flex = services.flexibility_compute(now=now)
    assert by_device(flex) == {
        "ahu": (0.0, "reading 20 min old"),
        "ev": (0.0, "disabled"),
        "lights": (0.0, "no reading"),
    }
    assert flex.total_kw == 0
    assert flex.devices[0].current_kw == pytest.approx(40.0)


def test_zero_or_negative_load_has_nothing_to_shed(plant: dict[str, FlexibleDevice]) -> None:
    power("ahu-power", 0, timezone.now() - timedelta(minutes=1))
    flex = services.flexibility_compute(devices=[plant["ahu"]])
    assert by_device(flex) == {"ahu": (0.0, "no load to shed (0.000 kW)")}


def test_window_applies_event_length_limits_and_commitments(
    loads: datetime, plant: dict[str, FlexibleDevice]
) -> None:
    services.device_update(device=plant["ahu"], min_event_minutes=30, max_event_minutes=120)
    start = timezone.now() + timedelta(hours=2)
    short = services.flexibility_compute(start=start, end=start + timedelta(minutes=15))
    assert by_device(short)["ahu"] == (0.0, "the window is shorter than the device's minimum of 30 min")
    long = services.flexibility_compute(start=start, end=start + timedelta(hours=3))
    assert by_device(long)["ahu"] == (0.0, "the window is longer than the device's maximum of 120 min")
    event = services.event_create(target_kw=5, start=start, end=start + timedelta(hours=1), devices=["ev"])
    window = services.flexibility_compute(
        start=start + timedelta(minutes=30), end=start + timedelta(minutes=90)
    )
    assert by_device(window) == {
        "ahu": (30.0, None),
        "ev": (0.0, f"committed to event {event.pk}"),
        "lights": (5.0, None),
    }
    # Back to back is no overlap.
    after = services.flexibility_compute(start=start + timedelta(hours=1), end=start + timedelta(hours=2))
    assert by_device(after)["ev"] == (10.0, None)


def loads_at(at: datetime) -> None:
    power("ahu-power", 40, at)
    power("ev-power", 20, at)
    power("lights-power", 8, at)


def test_now_leaves_out_devices_an_event_holds(
    plant: dict[str, FlexibleDevice], viewer_api: APIClient
) -> None:
    base = timezone.now()
    loads_at(base - timedelta(minutes=32))
    event = services.event_create(
        target_kw=10,
        start=base - timedelta(minutes=30),
        end=base - timedelta(minutes=10),
        devices=["ahu"],
        now=base - timedelta(minutes=31),
    )
    # An event later on does not hold its device now.
    later = services.event_create(
        target_kw=5, start=base + timedelta(hours=1), end=base + timedelta(hours=2), devices=["lights"]
    )
    free = {"ahu": (30.0, None), "ev": (10.0, None), "lights": (5.0, None)}
    held = {**free, "ahu": (0.0, f"committed to event {event.pk}")}
    assert by_device(services.flexibility_compute(now=base - timedelta(minutes=31))) == free
    # Started and not yet activated: the next tick sheds the ahu.
    assert by_device(services.flexibility_compute(now=base - timedelta(minutes=29))) == held
    services.events_tick(now=base - timedelta(minutes=29))
    assert DREvent.objects.get(pk=event.pk).status == "active"
    # Shedding now: not available to anyone else.
    assert by_device(services.flexibility_compute(now=base - timedelta(minutes=28))) == held
    # Past its end but not yet completed by the scheduler, the ahu is still shed.
    loads_at(base - timedelta(minutes=1))
    body = viewer_api.get("/api/v1/demand-response/flexibility").json()
    assert [(d["device"], d["flexible_kw"], d["reason"]) for d in body["devices"]] == [
        ("ahu", 0.0, f"committed to event {event.pk}"),
        ("ev", 10.0, None),
        ("lights", 5.0, None),
    ]
    assert body["total_kw"] == 15.0
    services.events_tick(now=base)
    assert by_device(services.flexibility_compute(now=base)) == free
    assert DREvent.objects.get(pk=later.pk).status == "scheduled"


def test_flexibility_endpoint_now_and_window(loads: datetime, viewer_api: APIClient) -> None:
    body = viewer_api.get("/api/v1/demand-response/flexibility").json()
    assert body["total_kw"] == 45.0
    assert body["start"] is None
    assert [(d["device"], d["flexible_kw"], d["reason"]) for d in body["devices"]] == [
        ("ahu", 30.0, None),
        ("ev", 10.0, None),
        ("lights", 5.0, None),
    ]
    assert body["devices"][0]["current_kw"] == 40.0
    start = (timezone.now() + timedelta(hours=1)).replace(microsecond=0)
    window = viewer_api.get(
        "/api/v1/demand-response/flexibility",
        {"start": start.isoformat(), "end": (start + timedelta(hours=1)).isoformat()},
    )
    assert window.status_code == 200
    assert window.json()["start"] == start.isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"start": "2030-01-01T10:00:00Z"}, "Give both start and end, or neither."),
        ({"start": "2030-01-01T10:00:00Z", "end": "2030-01-01T09:00:00Z"}, "end must be after start."),
    ],
)
def test_flexibility_window_needs_both_ends_in_order(
    viewer_api: APIClient, query: dict[str, Any], message: str
) -> None:
    response = viewer_api.get("/api/v1/demand-response/flexibility", query)
    assert response.status_code == 400
    assert response.json()["message"] == message


@pytest.mark.clock("2026-10-24T12:00:00+00:00")
def test_a_window_in_the_repeated_hour_is_measured_in_real_time(
    plant: dict[str, FlexibleDevice], viewer_api: APIClient
) -> None:
    # 01:30 summer time to 01:10 winter time is 40 minutes: in order, and within 30..60.
    services.device_update(device=plant["ahu"], min_event_minutes=30, max_event_minutes=60)
    power("ahu-power", 40, timezone.now() - timedelta(minutes=1))
    window = viewer_api.get(
        "/api/v1/demand-response/flexibility",
        {"start": "2026-10-25T01:30:00+01:00", "end": "2026-10-25T01:10:00+00:00"},
    )
    assert window.status_code == 200, window.json()
    (ahu,) = [d for d in window.json()["devices"] if d["device"] == "ahu"]
    assert (ahu["flexible_kw"], ahu["reason"]) == (30.0, None)


def test_flexibility_of_many_devices_is_a_few_queries(
    plant: dict[str, FlexibleDevice], django_assert_max_num_queries: Any
) -> None:
    for i in range(40):
        services.device_create(name=f"fan-{i}", sensor_id="ahu-power", max_shed_kw=1)
    power("ahu-power", 40, timezone.now() - timedelta(minutes=1))
    devices = list(FlexibleDevice.objects.all())
    start = timezone.now() + timedelta(hours=1)
    # One query for the readings (sensors), one for the commitments (demand_response).
    with (
        django_assert_max_num_queries(1, connection=connections["sensors"]),
        django_assert_max_num_queries(1, connection=connections["demand_response"]),
    ):
        flex = services.flexibility_compute(start=start, end=start + timedelta(hours=1), devices=devices)
    assert flex.total_kw == pytest.approx(30 + 40 * 1)
    with (
        django_assert_max_num_queries(1, connection=connections["sensors"]),
        django_assert_max_num_queries(1, connection=connections["demand_response"]),
    ):
        assert services.flexibility_compute(devices=devices).total_kw == pytest.approx(70)
