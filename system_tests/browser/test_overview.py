"""The overview moves with the live feed."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from system_tests.conftest import Product, Session


def _post_power(product: Product, sensor_id: str, watts: float) -> None:
    status, body = product.request(
        "POST",
        "/api/v1/readings",
        {
            "readings": [
                {
                    "sensor_id": sensor_id,
                    "metric": "power",
                    "value": watts,
                    "timestamp": datetime.now(UTC).isoformat(),
                }
            ]
        },
    )
    assert status == 201, body


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
    session = signed_in()
    page = session.page
    page.goto("/")
    page.wait_for_selector('[data-live-status][data-state="live"]')
    chart = page.locator('[data-chart="power-hour"]')
    before = chart.evaluate("el => el.edChart.getOption().series[0].data.length")

    started = time.monotonic()
    _post_power(product, "bt-live-power", 4321.0)
    card = page.locator('[data-room="bt-live-room"] [data-metric="power"]')
    card.filter(has_text="4.3 kW").wait_for(timeout=2000)
    page.wait_for_function(
        "([el, n]) => el.edChart.getOption().series[0].data.length > n",
        arg=[chart.element_handle(), before],
        timeout=max(100, 2000 - (time.monotonic() - started) * 1000),
    )
    assert not session.errors, session.errors
