"""The room page's range picker and the sensors page, as the server renders them."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connections
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from energy_dashboard.pages.rooms import SENSORS_PER_PAGE, span_of
from energy_dashboard.testing import AFTER_FIXED_DATES
from sensors import services
from sensors.models import Sensor

pytestmark = pytest.mark.django_db(databases="__all__")


@pytest.fixture
def browser(viewer: User) -> Client:
    client = Client()
    client.force_login(viewer)
    return client


def config_of(html: str) -> dict[str, Any]:
    found = re.search(r'<script id="page-config" type="application/json">(.*?)</script>', html, re.S)
    assert found, html[:500]
    config: dict[str, Any] = json.loads(found.group(1))
    return config


@pytest.mark.parametrize(
    ("params", "first", "after"),
    [
        ({}, date(2026, 10, 25), date(2026, 10, 26)),
        ({"range": "day", "date": "2026-03-29"}, date(2026, 3, 29), date(2026, 3, 30)),
        ({"range": "week", "date": "2026-10-25"}, date(2026, 10, 19), date(2026, 10, 26)),
        ({"range": "month", "date": "2026-12-31"}, date(2026, 12, 1), date(2027, 1, 1)),
        ({"range": "year", "date": "2026-06-15"}, date(2026, 1, 1), date(2027, 1, 1)),
        ({"range": "custom", "from": "2026-10-01", "to": "2026-10-03"}, date(2026, 10, 1), date(2026, 10, 4)),
    ],
)
def test_a_range_is_local_calendar_days(params: dict[str, str], first: date, after: date) -> None:
    span = span_of(params, date(2026, 10, 25))
    assert (span.first, span.after, span.errors) == (first, after, [])


def test_a_bad_range_says_so_and_shows_something() -> None:
    today = date(2026, 10, 25)
    assert span_of({"range": "decade"}, today).errors
    swapped = span_of({"range": "custom", "from": "2026-10-05", "to": "2026-10-01"}, today)
    assert (swapped.first, swapped.after) == (date(2026, 10, 1), date(2026, 10, 6)) and swapped.errors
    long = span_of({"range": "custom", "from": "2020-01-01", "to": "2026-01-01"}, today)
    assert (long.after - long.first).days == 400 and long.errors
    assert span_of({"range": "day", "date": "25/10/2026"}, today).errors
    # Days outside the horizon are refused before any bound is computed from them.
    for far in ("9999-12-31", "0001-01-01", "2199-12-31"):
        span = span_of({"range": "year", "date": far}, today)
        assert span.errors and span.first == date(2026, 1, 1), far
    far_custom = span_of({"range": "custom", "from": "1900-01-01", "to": "9999-12-31"}, today)
    assert far_custom.first == today
    assert len(far_custom.errors) == 2


@pytest.mark.clock(AFTER_FIXED_DATES)
def test_the_room_page_hands_its_script_the_local_day(browser: Client) -> None:
    services.room_create(name="lab", display_name="The lab")
    services.sensor_register(sensor_id="lab-t", kind="temperature", room_name="lab")
    response = browser.get("/rooms/lab/?range=day&date=2026-10-25")
    assert response.status_code == 200
    html = response.content.decode()
    config = config_of(html)
    # 2026-10-25 in Lisbon: 25 hours, from 23:00 UTC the day before.
    assert (config["start"], config["end"]) == ("2026-10-24T23:00:00Z", "2026-10-26T00:00:00Z")
    assert config["room"] == "lab" and config["seriesUrl"] == "/api/v1/rooms/lab/series"
    assert (
        config["carpet"]["start"] == "2026-09-30T23:00:00Z"
        and config["carpet"]["end"] == "2026-11-01T00:00:00Z"
    )
    assert config["live"] is False and "websocket" in config
    assert "The lab" in html and "lab-t" in html
    # Keyboard-operable, labelled controls; the CSV link works without script too.
    for label in ('for="range"', 'for="range-date"', 'for="range-from"', 'for="range-resolution"'):
        assert label in html
    assert "/api/v1/rooms/lab/series?start=2026-10-24T23%3A00%3A00Z" in html
    assert "?range=day&amp;date=2026-10-24" in html and "?range=day&amp;date=2026-10-26" in html
    # A week that starts in November, chosen by a day of December: December's carpet.
    week = config_of(browser.get("/rooms/lab/?range=week&date=2026-12-02").content.decode())
    assert (week["start"], week["carpet"]["start"]) == ("2026-11-30T00:00:00Z", "2026-12-01T00:00:00Z")


def test_today_is_live_and_an_unknown_room_is_404(browser: Client) -> None:
    services.room_create(name="lab")
    config = config_of(browser.get("/rooms/lab/").content.decode())
    assert config["live"] is True
    assert Sensor.objects.count() == 0
    for query in ("range=year&date=9999-12-31", "range=custom&from=2026-13-01", "resolution=1s&range=x"):
        odd = browser.get(f"/rooms/lab/?{query}")
        assert odd.status_code == 200, query
        assert 'class="error"' in odd.content.decode(), query
    missing = browser.get("/rooms/nowhere/")
    assert missing.status_code == 404 and "No such room" in missing.content.decode()


def test_the_pages_need_a_sign_in(client: Client) -> None:
    services.room_create(name="lab")
    for url in ("/rooms/lab/", "/sensors/"):
        response = client.get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_the_sensors_page_filters_and_pages_without_script(browser: Client) -> None:
    services.room_create(name="lab")
    for n in range(SENSORS_PER_PAGE + 5):
        services.sensor_register(sensor_id=f"s-{n:03d}", kind="power", room_name="lab" if n % 2 else None)
    services.sensor_register(sensor_id="co2-1", kind="co2", room_name="lab")
    Sensor.objects.filter(sensor_id="s-040").update(status="fault")
    Sensor.objects.filter(sensor_id="co2-1").update(status="stale", last_seen=timezone.now())
    first = browser.get("/sensors/").content.decode()
    rows = re.findall(r'<tr data-sensor="([^"]+)"', first)
    assert rows[:3] == ["s-040", "co2-1", "s-000"] and len(rows) == SENSORS_PER_PAGE
    assert f"of {SENSORS_PER_PAGE + 6}" in first and "page=2" in first
    second = browser.get("/sensors/?page=2").content.decode()
    assert len(re.findall(r'<tr data-sensor="', second)) == 6
    co2 = browser.get("/sensors/?kind=co2&room=&search=").content.decode()
    assert re.findall(r'<tr data-sensor="([^"]+)"', co2) == ["co2-1"]
    assert 'value="co2" checked' in co2
    both = browser.get("/sensors/?status=fault&status=stale").content.decode()
    assert re.findall(r'<tr data-sensor="([^"]+)"', both) == ["s-040", "co2-1"]
    room = browser.get("/sensors/?room=lab&search=s-00").content.decode()
    assert re.findall(r'<tr data-sensor="([^"]+)"', room) == ["s-001", "s-003", "s-005", "s-007", "s-009"]
    bad = browser.get("/sensors/?kind=kettle&page=99")
    assert bad.status_code == 200 and "(ignored)" in bad.content.decode()


@pytest.mark.clock(AFTER_FIXED_DATES)
def test_the_sensors_page_shows_the_latest_value(browser: Client) -> None:
    services.sensor_register(sensor_id="t-1", kind="temperature")
    moment = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    services.readings_ingest(
        readings=[
            {
                "sensor_id": "t-1",
                "metric": "temperature",
                "timestamp": (moment + timedelta(minutes=i)).isoformat(),
                "value": 20 + i,
            }
            for i in range(3)
        ]
    )
    html = browser.get("/sensors/").content.decode()
    assert 'data-value="22.0"' in html and "2026-11-30T09:02:00+00:00" in html


@pytest.mark.clock(AFTER_FIXED_DATES)
def test_the_sensors_page_reads_a_page_in_a_bounded_number_of_queries(browser: Client) -> None:
    services.room_create(name="lab")
    kinds = ["power", "co2", "temperature", "humidity", "energy_meter", "occupancy"]
    for n in range(300):
        services.sensor_register(sensor_id=f"s-{n:03d}", kind=kinds[n % 6], room_name="lab")
    with CaptureQueriesContext(connections["sensors"]) as captured:
        response = browser.get("/sensors/?page=3")
    assert response.status_code == 200
    assert len(re.findall(r'<tr data-sensor="', response.content.decode())) == SENSORS_PER_PAGE
    # The count, the page, one latest-value query per kind, the room names: not one per sensor.
    assert len(captured.captured_queries) <= 10, [q["sql"][:120] for q in captured.captured_queries]
