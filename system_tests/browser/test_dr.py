"""The demand-response page in a browser: an operator accepts an invitation and its status
changes on the page (by the form, and live when it is answered elsewhere); a viewer sees no
control, and a POST forged with a valid CSRF token is refused."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from playwright.sync_api import expect

from system_tests.conftest import Product, Session


def _plant(product: Product, name: str) -> None:
    """A room with a metered flexible device drawing 40 kW now (it may shed up to 30) until the
    demo's simulator posts its next value for the sensor."""
    assert product.request("POST", "/api/v1/rooms/", {"name": f"{name}-room"})[0] == 201
    sensor = {"sensor_id": f"{name}-power", "kind": "power", "room": f"{name}-room"}
    assert product.request("POST", "/api/v1/sensors/", sensor)[0] == 201
    reading = {
        "sensor_id": f"{name}-power",
        "metric": "power",
        "value": 40_000.0,
        "timestamp": datetime.now(UTC).isoformat(),
    }
    assert product.request("POST", "/api/v1/readings", {"readings": [reading]})[0] == 201
    device = {"name": name, "sensor_id": f"{name}-power", "category": "hvac", "max_shed_kw": 30}
    status, body = product.request("POST", "/api/v1/demand-response/devices/", device)
    assert status == 201, body


def _invitation(product: Product, kw: float, hours: int) -> dict[str, Any]:
    now = datetime.now(UTC)
    status, body = product.request(
        "POST",
        "/api/v1/demand-response/invitations/",
        {
            "reduction_kw": kw,
            "start": (now + timedelta(hours=hours)).isoformat(),
            "duration_minutes": 60,
            "response_deadline": (now + timedelta(minutes=30)).isoformat(),
            "programme": "bt-peak",
        },
    )
    assert status == 201, body
    return body


def test_an_operator_accepts_an_invitation_and_its_status_changes_on_the_page(
    product: Product, signed_in: Any
) -> None:
    _plant(product, "bt-dr-ahu")
    invitation = _invitation(product, 12, hours=30)
    session: Session = signed_in()
    page = session.page
    page.goto("/demand-response/")
    item = page.locator(f'[data-invitation="{invitation["id"]}"]')
    expect(item.locator("[data-status]")).to_have_text("Pending")
    item.get_by_label("Note").fill("browser test")
    item.get_by_role("button", name=f"Accept invitation {invitation['id']}").click()
    page.wait_for_url(re.compile(r"/demand-response/"))
    # How much is covered depends on the loads now (the demo's simulator drives every power
    # sensor, this one included); the answer and its status do not.
    expect(page.locator(".messages")).to_contain_text(
        re.compile(rf"Invitation {invitation['id']} accepted: [\d.]+ of 12\.0 kW")
    )
    answered = page.locator(f'[data-answered="{invitation["id"]}"]')
    expect(answered).to_contain_text("Accepted")
    expect(answered).to_contain_text("operator:operator")
    expect(page.locator(f'[data-invitation="{invitation["id"]}"]')).to_have_count(0)
    # Its event is in the timeline, with a report page.
    event_id = product.request("GET", f"/api/v1/demand-response/invitations/{invitation['id']}")[1][
        "event_id"
    ]
    expect(page.locator(f'[data-event="{event_id}"] [data-status]')).to_have_text("Scheduled")
    assert page.locator('[data-chart="dr-timeline"] canvas').count() == 1
    assert not session.errors, session.errors
    assert not session.csp_violations, session.csp_violations


def test_an_answer_made_elsewhere_reaches_the_open_page_live(product: Product, signed_in: Any) -> None:
    _plant(product, "bt-dr-chiller")
    invitation = _invitation(product, 8, hours=40)
    session: Session = signed_in()
    page = session.page
    page.goto("/demand-response/")
    page.wait_for_selector('[data-live-status][data-state="live"]')
    item = page.locator(f'[data-invitation="{invitation["id"]}"]')
    expect(item.locator("[data-status]")).to_have_text("Pending")
    status, body = product.request(
        "POST",
        f"/api/v1/demand-response/invitations/{invitation['id']}/decline",
        {"reason": "declined from the API"},
    )
    assert status == 200, body
    expect(item.locator("[data-status]")).to_have_text("Declined", timeout=5000)
    expect(item).to_contain_text("declined from the API")
    expect(item.get_by_role("button", name=re.compile("Accept"))).to_have_count(0)
    # A new invitation appears without a reload, in the list and on the timeline.
    chart = page.locator('[data-chart="dr-timeline"]')
    fresh = _invitation(product, 5, hours=50)
    expect(page.locator(f'[data-invitation="{fresh["id"]}"] [data-status]')).to_have_text(
        "Pending", timeout=5000
    )
    page.wait_for_function(
        "([el, start]) => el.edChart.getOption().series[2].data.some((p) => p[0] === Date.parse(start))",
        arg=[chart.element_handle(), fresh["start"]],
        timeout=5000,
    )
    assert not session.errors, session.errors


def test_a_viewer_sees_no_answer_control_and_a_forged_post_is_refused(
    product: Product, signed_in: Any
) -> None:
    invitation = _invitation(product, 6, hours=60)
    session: Session = signed_in("viewer")
    page = session.page
    page.goto("/demand-response/")
    item = page.locator(f'[data-invitation="{invitation["id"]}"]')
    expect(item.locator("[data-status]")).to_have_text("Pending")
    expect(page.get_by_role("button", name=re.compile("^(Accept|Decline)"))).to_have_count(0)
    expect(page.locator("form[action*='/accept'], form[action*='/decline']")).to_have_count(0)
    token = next(c["value"] for c in session.context.cookies() if c["name"] == "csrftoken")
    for action in ("accept", "decline"):
        response = page.request.post(
            f"/demand-response/invitations/{invitation['id']}/{action}",
            form={"csrfmiddlewaretoken": token, "reason": "forged"},
            headers={"Accept": "text/html"},
        )
        assert response.status == 403
        assert "Only operators answer invitations" in response.text()
    stored = product.request("GET", f"/api/v1/demand-response/invitations/{invitation['id']}")[1]
    assert (stored["status"], stored["answered_by"]) == ("pending", "")
