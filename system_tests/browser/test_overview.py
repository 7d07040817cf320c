"""The overview moves with the live feed, compares energy with the past and breaks a main
meter down into its sub-meters and their unmetered remainder."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from system_tests.conftest import Product, Session


def _post(product: Product, sensor_id: str, metric: str, value: float, at: datetime | None = None) -> None:
    status, body = product.request(
        "POST",
        "/api/v1/readings",
        {
            "readings": [
                {
                    "sensor_id": sensor_id,
                    "metric": metric,
                    "value": value,
                    "timestamp": (at or datetime.now(UTC)).isoformat(),
                }
            ]
        },
    )
    assert status == 201, body


def _aggregate(product: Product) -> None:
    """What the worker's 5-minute job does, now (the test cannot wait for its schedule)."""
    product.manage("shell", "-c", "from sensors import services; services.aggregates_compute()")


def test_a_posted_batch_reaches_the_chart_and_its_room_card_within_two_seconds(
    product: Product, signed_in: Callable[..., Session]
) -> None:
    assert product.request("POST", "/api/v1/rooms/", {"name": "bt-live-room"})[0] == 201
    assert (
        product.request(
            "POST",
            "/api/v1/sensors/",
            {"sensor_id": "bt-live-power", "kind": "power", "room": "bt-live-room"},
        )[0]
        == 201
    )
    assert (
        product.request(
            "POST",
            "/api/v1/sensors/",
            {"sensor_id": "bt-live-co2", "kind": "co2", "room": "bt-live-room"},
        )[0]
        == 201
    )
    session = signed_in()
    page = session.page
    page.goto("/")
    page.wait_for_selector('[data-live-status][data-state="live"]')
    chart = page.locator('[data-chart="power-hour"]')
    before = chart.evaluate("el => el.edChart.getOption().series[0].data.length")

    started = time.monotonic()
    _post(product, "bt-live-power", "power", 4321.0)
    card = page.locator('[data-room="bt-live-room"]')
    card.locator('[data-metric="power"]').filter(has_text="4.3 kW").wait_for(timeout=2000)
    page.wait_for_function(
        "([el, n]) => el.edChart.getOption().series[0].data.length > n",
        arg=[chart.element_handle(), before],
        timeout=max(100, 2000 - (time.monotonic() - started) * 1000),
    )
    # The newest point is the building's total, which holds the posted 4321 W.
    newest = chart.evaluate("el => el.edChart.getOption().series[0].data.at(-1)[1]")
    assert newest >= 4321.0

    # A CO2 reading above the comfort band says so in words, not only in colour.
    _post(product, "bt-live-co2", "co2", 1450.0)
    co2 = card.locator('[data-figure="co2"]')
    co2.filter(has_text=re.compile(r"1,?450 ppm")).wait_for(timeout=2000)
    assert "high (above 1000)" in co2.inner_text()
    assert "comfort-high" in (co2.get_attribute("class") or "")
    assert not session.errors, session.errors


def test_the_comparisons_and_the_hierarchy_remainder_show(
    product: Product, signed_in: Callable[..., Session]
) -> None:
    for sensor in (
        {"sensor_id": "bt-main", "kind": "energy_meter", "name": "BT main meter"},
        {"sensor_id": "bt-sub", "kind": "energy_meter", "name": "BT sub-meter", "part_of": "bt-main"},
    ):
        status, body = product.request("POST", "/api/v1/sensors/", sensor)
        assert status == 201, body
    # A cycle is refused with its reason.
    status, body = product.request("PATCH", "/api/v1/sensors/bt-main/", {"part_of": "bt-sub"})
    assert status == 400
    assert "cycle" in str(body)
    at = datetime.now(UTC) - timedelta(minutes=1)
    _post(product, "bt-main", "energy", 5.0, at)
    _post(product, "bt-sub", "energy", 2.0, at)
    _aggregate(product)

    session = signed_in("viewer")
    page = session.page
    page.goto("/")
    day = page.locator('[data-comparison="day"]')
    assert "kWh" in day.locator(".figure").inner_text()
    assert "\u2013" not in day.locator(".figure").inner_text()  # the empty state's dash
    for period in ("week", "month"):
        assert page.locator(f'[data-comparison="{period}"]').is_visible()
    main = page.locator('[data-meter="bt-main"]')
    assert "5.0 kWh" in main.locator(".meter-row").first.inner_text()
    assert "2.0 kWh" in main.locator('[data-meter="bt-sub"]').inner_text()
    remainder = page.locator('[data-remainder="bt-main"]')
    assert "Unmetered remainder" in remainder.inner_text()
    assert "3.0 kWh" in remainder.inner_text()
    assert not session.errors, session.errors
