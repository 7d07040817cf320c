"""The room page (history per range, daylight-saving days, the CSV, live readings) and the
sensors page's filters, in Chromium against the product as `run --demo` serves it."""

from __future__ import annotations

import csv
import io
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from system_tests.conftest import TIME_ZONE, Product, Session

LISBON = ZoneInfo(TIME_ZONE)
LOCAL_ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?[+-]\d\d:\d\d$")


def _room(product: Product, room: str, sensors: dict[str, str]) -> None:
    status, body = product.request("POST", "/api/v1/rooms/", {"name": room})
    assert status in (200, 201), body
    for sensor_id, kind in sensors.items():
        status, body = product.request(
            "POST", "/api/v1/sensors/", {"sensor_id": sensor_id, "kind": kind, "room": room}
        )
        assert status in (200, 201), body


def _post(product: Product, readings: list[dict[str, Any]]) -> None:
    status, body = product.request("POST", "/api/v1/readings", {"readings": readings})
    assert status in (200, 201), body


def _aggregate(product: Product) -> None:
    """Bring rollups and room metrics up to date now (the scheduler does it every 5 minutes)."""
    product.manage("shell", "-c", "from sensors import services; services.aggregates_compute()")


def _chart(page: Any, metric: str) -> list[dict[str, Any]]:
    """What a metric's chart draws: [{name, data: [[ms, value]]}]."""
    series: list[dict[str, Any]] = page.locator(f'[data-chart="{metric}"]').evaluate(
        "el => el.edChart.getOption().series.map(s => ({name: s.name, data: s.data}))"
    )
    return series


def _loaded(page: Any) -> None:
    page.wait_for_selector("body[data-loaded=history]")


def test_the_room_chart_shows_the_stored_points_for_a_chosen_range(product: Product, signed_in: Any) -> None:
    _room(product, "bt-room-range", {"bt-range-power": "power", "bt-range-temp": "temperature"})
    day = datetime.now(LISBON).date() - timedelta(days=3)
    base = datetime(day.year, day.month, day.day, 9, 0, tzinfo=LISBON).astimezone(UTC)
    watts = [400.0, 420.0, 390.0, 510.0, 480.0, 300.0]
    _post(
        product,
        [
            {
                "sensor_id": "bt-range-power",
                "metric": "power",
                "timestamp": (base + timedelta(minutes=10 * i)).isoformat(),
                "value": w,
            }
            for i, w in enumerate(watts)
        ]
        + [
            {
                "sensor_id": "bt-range-temp",
                "metric": "temperature",
                "timestamp": base.isoformat(),
                "value": 21.5,
            }
        ]
        # The day before: outside the chosen range.
        + [
            {
                "sensor_id": "bt-range-power",
                "metric": "power",
                "timestamp": (base - timedelta(days=1)).isoformat(),
                "value": 9999.0,
            }
        ],
    )
    _aggregate(product)
    session: Session = signed_in()
    page = session.page
    page.goto("/rooms/bt-room-range/")
    _loaded(page)
    # The range picker, by its labels, from the keyboard.
    page.get_by_label("Range", exact=True).select_option("day")
    page.get_by_label("Date", exact=True).fill(day.isoformat())
    page.get_by_label("Resolution", exact=True).select_option("raw")
    page.get_by_label("Date", exact=True).press("Enter")
    page.wait_for_url(re.compile(rf"range=day&date={day.isoformat()}"))
    _loaded(page)
    [power] = _chart(page, "power")
    assert power["name"] == "bt-range-power"
    assert power["data"] == [
        [int((base + timedelta(minutes=10 * i)).timestamp() * 1000), w] for i, w in enumerate(watts)
    ]
    assert _chart(page, "temperature")[0]["data"] == [[int(base.timestamp() * 1000), 21.5]]
    assert page.locator('[data-metric-card="humidity"] [data-empty]').is_visible()
    assert "raw readings · 7 points" in page.locator("[data-series-status]").inner_text()

    # The same day at hourly resolution: the rollups, in the building's hours.
    page.get_by_label("Resolution", exact=True).select_option("1h")
    page.get_by_role("button", name="Show").click()
    page.wait_for_url(re.compile(r"resolution=1h"))
    _loaded(page)
    [hourly] = _chart(page, "power")
    assert hourly["data"] == [[int(base.timestamp() * 1000), sum(watts) / len(watts)]]
    assert not session.errors, session.errors


def test_a_daylight_saving_day_shows_its_25_hours_and_the_csv_matches_the_chart(
    product: Product, signed_in: Any
) -> None:
    _room(product, "bt-room-dst", {"bt-dst-energy": "energy_meter", "bt-dst-power": "power"})
    # 2026-10-25 in Lisbon: from 00:00 (+01:00, 23:00 UTC the day before) to 24:00 (+00:00), the
    # hour from 01:00 twice: 25 hours.
    first = datetime(2026, 10, 24, 23, 0, tzinfo=UTC)
    hours = [first + timedelta(hours=h) for h in range(25)]
    _post(
        product,
        [
            {"sensor_id": "bt-dst-energy", "metric": "energy", "timestamp": at.isoformat(), "value": 1.5}
            for at in hours
        ]
        + [
            {"sensor_id": "bt-dst-power", "metric": "power", "timestamp": at.isoformat(), "value": 100.0 + h}
            for h, at in enumerate(hours)
        ],
    )
    _aggregate(product)
    session: Session = signed_in()
    page = session.page
    page.goto("/rooms/bt-room-dst/?range=day&date=2026-10-25")
    _loaded(page)
    assert page.locator("body").get_attribute("data-resolution") == "5m"
    energy = page.locator('[data-chart="energy"]')
    axis = energy.evaluate("el => { const x = el.edChart.getOption().xAxis[0]; return [x.min, x.max]; }")
    assert (axis[1] - axis[0]) == 25 * 3600 * 1000
    [series] = _chart(page, "energy")
    assert [x for x, _ in series["data"]] == [int(at.timestamp() * 1000) for at in hours]
    # The axis labels are the building's wall clock: midnight to midnight, 01:00 twice.
    labels = page.evaluate(
        """() => {
          const f = new Intl.DateTimeFormat('en-GB', {timeZone: 'Europe/Lisbon', hour: '2-digit', minute: '2-digit', hourCycle: 'h23'});
          const el = document.querySelector('[data-chart="energy"]');
          const option = el.edChart.getOption();
          const formatter = option.xAxis[0].axisLabel.formatter;
          return option.series[0].data.map(([x]) => [formatter(x), f.format(new Date(x))]);
        }"""
    )
    shown = [label for label, _ in labels]
    assert shown == [expected for _, expected in labels]
    assert shown[:4] == ["00:00", "01:00", "01:00", "02:00"]
    assert shown[-1] == "23:00"
    # The month's carpet: 25 October's 01:00 holds both of its hours.
    cell = page.locator('[data-chart="carpet"]').evaluate(
        "el => el.edChart.getOption().series[0].data.find(([d, h]) => d === 24 && h === 1)"
    )
    assert cell == [24, 1, 3.0]

    # The CSV: exactly the points the charts show, local timestamps with their offsets.
    with page.expect_download() as info:
        page.get_by_role("link", name="Download CSV").click()
    rows = list(csv.reader(io.StringIO(Path(info.value.path()).read_text())))
    assert rows[0] == ["metric", "sensor_id", "timestamp", "value"]
    shown_points = []
    for metric in ("power", "energy"):
        for s in _chart(page, metric):
            shown_points += [(metric, x, v) for x, v in s["data"]]
    csv_points = []
    for metric, sensor_id, stamp, value in rows[1:]:
        assert LOCAL_ISO.match(stamp), stamp
        assert sensor_id == ""  # 5-minute room windows: the room's, not a sensor's
        csv_points.append((metric, int(datetime.fromisoformat(stamp).timestamp() * 1000), float(value)))
    assert csv_points == shown_points
    assert len(csv_points) == 50
    stamps = [row[2] for row in rows[1:] if row[0] == "energy"]
    assert stamps[:3] == [
        "2026-10-25T00:00:00+01:00",
        "2026-10-25T01:00:00+01:00",
        "2026-10-25T01:00:00+00:00",
    ]
    assert stamps[-1] == "2026-10-25T23:00:00+00:00"
    assert not session.errors, session.errors


def test_live_readings_join_todays_chart(product: Product, signed_in: Any) -> None:
    _room(product, "bt-room-live", {"bt-roomlive-power": "power"})
    session: Session = signed_in()
    page = session.page
    # Today, at the resolution that fits a day (5 minutes): a live reading joins its bucket.
    page.goto("/rooms/bt-room-live/")
    page.wait_for_selector('[data-live-status][data-state="live"]')
    _loaded(page)
    assert page.locator("body").get_attribute("data-resolution") == "5m"
    now = datetime.now(UTC).timestamp()
    bucket = now // 300 * 300
    if now - bucket < 3:  # too close to the bucket's start for two readings in it: the one before
        bucket -= 300
    first = datetime.fromtimestamp(bucket + 1, UTC)
    _post(
        product,
        [
            {
                "sensor_id": "bt-roomlive-power",
                "metric": "power",
                "timestamp": first.isoformat(),
                "value": 700.0,
            }
        ],
    )
    _post(
        product,
        [
            {
                "sensor_id": "bt-roomlive-power",
                "metric": "power",
                "timestamp": (first + timedelta(seconds=1)).isoformat(),
                "value": 900.0,
            }
        ],
    )
    # The bucket's mean of the readings seen, at the bucket's start.
    page.wait_for_function(
        "([x]) => { const el = document.querySelector('[data-chart=\"power\"]');"
        " return el.edChart && el.edChart.getOption().series[0].data.some(p => p[0] === x && p[1] === 800); }",
        arg=[int(bucket * 1000)],
        timeout=5000,
    )
    # Raw readings: each one as it is.
    page.goto("/rooms/bt-room-live/?resolution=raw")
    page.wait_for_selector('[data-live-status][data-state="live"]')
    _loaded(page)
    _post(
        product,
        [
            {
                "sensor_id": "bt-roomlive-power",
                "metric": "power",
                "timestamp": datetime.now(UTC).isoformat(),
                "value": 777.0,
            }
        ],
    )
    page.wait_for_function(
        "() => { const el = document.querySelector('[data-chart=\"power\"]');"
        " return el.edChart && el.edChart.getOption().series.some(s => s.data.some(p => p[1] === 777)); }",
        timeout=5000,
    )
    # The sensors table follows: the latest value, with its unit.
    page.locator('tr[data-sensor="bt-roomlive-power"] [data-latest]').filter(has_text="777 W").wait_for(
        timeout=5000
    )
    assert not session.errors, session.errors


def test_the_sensors_page_filters_with_the_apis_filters(product: Product, signed_in: Any) -> None:
    _room(
        product, "bt-room-filters", {"bt-sf-co2": "co2", "bt-sf-power": "power", "bt-sf-temp": "temperature"}
    )
    status, body = product.request("PATCH", "/api/v1/sensors/bt-sf-temp/", {"status": "fault"})
    assert status == 200, body
    session: Session = signed_in()
    page = session.page
    page.goto("/sensors/")
    page.get_by_label("Search").fill("bt-sf-")
    page.get_by_role("button", name="Filter").click()
    rows = page.locator("tbody tr")
    # The faulty one first.
    assert rows.evaluate_all("rows => rows.map(r => r.dataset.sensor)") == [
        "bt-sf-temp",
        "bt-sf-co2",
        "bt-sf-power",
    ]
    page.get_by_label("CO₂").check()
    page.get_by_label("Power", exact=True).check()
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r"kind=co2"))
    assert rows.evaluate_all("rows => rows.map(r => r.dataset.sensor)") == ["bt-sf-co2", "bt-sf-power"]
    page.goto("/sensors/?status=fault&room=bt-room-filters")
    assert rows.evaluate_all("rows => rows.map(r => r.dataset.sensor)") == ["bt-sf-temp"]
    assert page.locator('tbody tr [data-status="fault"]').inner_text() == "Fault"
    page.get_by_role("link", name="bt-room-filters").click()
    page.wait_for_url("**/rooms/bt-room-filters/")
    assert page.get_by_role("heading", name="bt-room-filters", level=1).is_visible()
    assert not session.errors, session.errors


VIEWPORTS = {"desktop": (1440, 900), "phone": (375, 812), "wall": (1920, 1080)}


@pytest.mark.parametrize("theme", ["light", "dark"])
@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_the_pages_fit_every_screen_in_both_themes(
    product: Product, signed_in: Any, viewport: str, theme: str
) -> None:
    """No page is wider than its screen; with ROOM_SCREENSHOTS set, each is saved there."""
    width, height = VIEWPORTS[viewport]
    session: Session = signed_in(viewport={"width": width, "height": height}, color_scheme=theme)
    session.context.add_cookies([{"name": "theme", "value": theme, "url": product.url}])
    page = session.page
    folder = os.environ.get("ROOM_SCREENSHOTS")
    for name, url in (
        ("room", "/rooms/office-101/"),
        ("room-month", "/rooms/office-101/?range=month"),
        ("room-kiosk", "/rooms/office-101/?kiosk=1"),
        ("sensors", "/sensors/"),
    ):
        page.goto(url)
        if name.startswith("room"):
            _loaded(page)
            page.wait_for_selector('[data-chart="carpet"] canvas')
        overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, (name, viewport, overflow)
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
            page.screenshot(path=f"{folder}/{name}-{viewport}-{theme}.png", full_page=True)
    assert not session.errors, session.errors
