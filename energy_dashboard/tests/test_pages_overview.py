"""The overview page as the server renders it: empty states that say what to do, the
comparisons, the meter breakdown with its remainder, room cards with their comfort bands in
words, demand response and the meter files; and viewers see no control."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from demand_response import services as dr
from demand_response.tests import conftest as dr_fixtures
from sensors import services as sensors

pytestmark = pytest.mark.django_db(databases="__all__")
# The demand-response tests' plant room: metered flexible devices an event can take.
plant = dr_fixtures.plant


def page(client: Client) -> str:
    response = client.get("/", HTTP_ACCEPT="text/html")
    assert response.status_code == 200
    return response.content.decode()


def config(html: str) -> dict[str, Any]:
    found = re.search(r'<script id="page-config" type="application/json">(.*?)</script>', html, re.S)
    assert found
    return json.loads(found.group(1))


def test_an_empty_building_says_what_to_do(viewer_client: Client) -> None:
    html = page(viewer_client)
    assert "No rooms yet. Create rooms" in html
    assert "No power readings in the last hour" in html
    assert "No energy readings today yet" in html
    assert "No meter file imported yet" in html
    assert "No event active or scheduled" in html
    assert "No invitation waiting for an answer" in html


def _readings(sensor: str, metric: str, value: float, minutes: list[int]) -> list[dict[str, Any]]:
    now = timezone.now()
    return [
        {
            "sensor_id": sensor,
            "metric": metric,
            "timestamp": (now - timedelta(minutes=m)).isoformat(),
            "value": value,
        }
        for m in minutes
    ]


def test_a_building_shows_its_figures_breakdown_and_rooms(viewer_client: Client) -> None:
    sensors.room_create(name="lab")
    sensors.sensor_register(sensor_id="main", kind="energy_meter", name="Main meter")
    sensors.sensor_register(sensor_id="lab-meter", kind="energy_meter", room_name="lab", part_of="main")
    sensors.sensor_register(sensor_id="lab-power", kind="power", room_name="lab")
    sensors.sensor_register(sensor_id="lab-co2", kind="co2", room_name="lab")
    sensors.sensor_register(sensor_id="lab-temp", kind="temperature", room_name="lab")
    # Today's energy: whatever the time of day, the last minutes are today's (the run's clock
    # is never within minutes after midnight: see the --clock values of make test).
    sensors.readings_ingest(
        readings=[
            *_readings("main", "energy", 3.0, [1]),
            *_readings("lab-meter", "energy", 1.0, [1]),
            *_readings("lab-power", "power", 4321.0, [1]),
            *_readings("lab-co2", "co2", 1400.0, [1]),
            *_readings("lab-temp", "temperature", 22.0, [1]),
        ]
    )
    sensors.aggregates_compute()
    sensors.sensors_mark_stale()
    html = page(viewer_client)
    assert "4.3 kW" in html  # power now and the lab's card, as the script writes it
    assert 'data-comparison="day"' in html and 'data-comparison="month"' in html
    assert "Unmetered remainder" in html and "Main meter" in html
    assert re.search(r'data-remainder="main".*?2\.0 kWh', html, re.S)
    assert "1,400 ppm" in html and "high (above 1000)" in html
    assert "22.0 °C" in html and "in band" in html
    live = config(html)
    assert live["parents"] == {"lab-meter": {"part_of": "main", "parent_room": None}}
    assert ["lab-power", "lab", "power"] in [row[:3] for row in live["latest"]]
    assert "<form" not in html.split("<main", 1)[1]  # a viewer gets no control on the overview


@pytest.mark.usefixtures("plant")
def test_demand_response_shows_the_next_event_and_pending_invitations(viewer_client: Client) -> None:
    now = timezone.now()
    dr.invitation_create(
        reduction_kw=12.5,
        start=now + timedelta(hours=3),
        end=now + timedelta(hours=4),
        response_deadline=now + timedelta(hours=2),
        programme="peak-saver",
    )
    dr.event_create(
        name="Evening peak", target_kw=30.0, start=now + timedelta(hours=5), end=now + timedelta(hours=6)
    )
    html = page(viewer_client)
    assert "12.5 kW" in html and "answer by" in html and "peak-saver" in html
    assert "Evening peak" in html and "target 30.0 kW" in html and ">Next<" in html
