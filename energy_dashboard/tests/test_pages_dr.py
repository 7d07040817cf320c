"""The demand-response page: what operators and viewers see, answers through the services
(the API's rules), forged and token-less POSTs, an event's report."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from demand_response import services as dr
from demand_response.tests import conftest as dr_fixtures

pytestmark = pytest.mark.django_db(databases="__all__")

PAGE = "/demand-response/"
# The demand-response tests' plant room: three metered flexible devices, and their loads now.
plant = dr_fixtures.plant
loads = dr_fixtures.loads


def _invitation(kw: float = 20.0, **extra: Any) -> Any:
    now = timezone.now()
    return dr.invitation_create(
        reduction_kw=kw,
        start=now + timedelta(hours=2),
        end=now + timedelta(hours=3),
        response_deadline=now + timedelta(hours=1),
        programme="peak-saver",
        **extra,
    )


def _client(user: User, *, csrf: bool = False) -> Client:
    client = Client(enforce_csrf_checks=csrf)
    client.force_login(user)
    return client


def _token(client: Client) -> str:
    client.get(PAGE)
    return str(client.cookies["csrftoken"].value)


def _messages(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_the_page_needs_a_signed_in_user() -> None:
    response = Client().get(PAGE)
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


@pytest.mark.usefixtures("loads")
def test_an_operator_sees_the_pending_invitation_with_its_answer_forms(operator: User) -> None:
    invitation = _invitation()
    page = _client(operator).get(PAGE, HTTP_ACCEPT="text/html")
    html = page.content.decode()
    assert page.status_code == 200
    assert f'data-invitation="{invitation.pk}"' in html and "peak-saver" in html
    assert f"/demand-response/invitations/{invitation.pk}/accept" in html
    assert f"/demand-response/invitations/{invitation.pk}/decline" in html
    assert html.count('name="csrfmiddlewaretoken"') >= 3  # sign-out, accept, decline
    # Flexibility now, per device: ahu 30 kW, ev 10 kW, lights 5 kW.
    assert page.context["flexibility"]["total_kw"] == 45.0
    assert 'data-device="ahu"' in html


@pytest.mark.usefixtures("loads")
def test_a_viewer_sees_the_invitation_but_no_control(viewer: User) -> None:
    invitation = _invitation()
    html = _client(viewer).get(PAGE).content.decode()
    assert f'data-invitation="{invitation.pk}"' in html
    assert "/accept" not in html and "/decline" not in html
    assert "<form" in html and html.count("<form") == 1  # sign-out only


@pytest.mark.usefixtures("loads")
def test_accepting_on_the_page_commits_devices_and_says_so(operator: User) -> None:
    invitation = _invitation(kw=35)
    client = _client(operator, csrf=True)
    response = client.post(
        f"/demand-response/invitations/{invitation.pk}/accept",
        {"csrfmiddlewaretoken": _token(client), "reason": ""},
        follow=True,
    )
    assert response.status_code == 200
    invitation.refresh_from_db()
    assert invitation.status == "accepted" and invitation.answered_by == "operator:op"
    assert [c["device"] for c in invitation.commitment] == ["ahu", "ev"]
    (message,) = _messages(response)
    assert message.startswith(f"Invitation {invitation.pk} accepted: 35.0 of 35.0 kW committed")
    # The page it lands on lists it among the answers, and the scheduled event in the timeline.
    html = response.content.decode()
    assert f'data-answered="{invitation.pk}"' in html and f'data-invitation="{invitation.pk}"' not in html
    assert f'data-event="{invitation.event.pk}"' in html


@pytest.mark.usefixtures("loads")
def test_declining_needs_a_reason_as_in_the_api(operator: User) -> None:
    invitation = _invitation()
    client = _client(operator)
    url = f"/demand-response/invitations/{invitation.pk}/decline"
    empty = client.post(url, {"reason": "  "}, follow=True)
    assert _messages(empty) == [
        f"Invitation {invitation.pk} was not declined: Say why the invitation is declined."
    ]
    invitation.refresh_from_db()
    assert invitation.status == "pending"
    done = client.post(url, {"reason": "the chillers are in maintenance"}, follow=True)
    invitation.refresh_from_db()
    assert (invitation.status, invitation.reason) == ("declined", "the chillers are in maintenance")
    assert _messages(done) == [f"Invitation {invitation.pk} declined: the chillers are in maintenance."]


@pytest.mark.usefixtures("loads")
def test_an_answer_to_an_answered_invitation_is_refused_with_a_message(operator: User) -> None:
    invitation = _invitation()
    dr.invitation_decline(invitation=invitation.pk, answered_by="operator:other", reason="no")
    response = _client(operator).post(f"/demand-response/invitations/{invitation.pk}/accept", follow=True)
    assert _messages(response) == [
        f"Invitation {invitation.pk} was not accepted: Invitation {invitation.pk} is already declined."
    ]


@pytest.mark.usefixtures("plant")
def test_accepting_with_no_flexibility_is_refused_with_the_services_reason(operator: User) -> None:
    invitation = _invitation()  # no readings: no device can shed
    response = _client(operator).post(f"/demand-response/invitations/{invitation.pk}/accept", follow=True)
    (message,) = _messages(response)
    assert "No device can shed load in that window" in message and "ahu: no reading" in message
    invitation.refresh_from_db()
    assert invitation.status == "pending"


@pytest.mark.usefixtures("loads")
def test_a_forged_post_by_a_viewer_with_a_valid_token_is_refused_and_changes_nothing(viewer: User) -> None:
    invitation = _invitation()
    client = _client(viewer, csrf=True)
    token = _token(client)
    for action in ("accept", "decline"):
        response = client.post(
            f"/demand-response/invitations/{invitation.pk}/{action}",
            {"csrfmiddlewaretoken": token, "reason": "forged"},
            HTTP_ACCEPT="text/html",
        )
        assert response.status_code == 403
        assert "Only operators answer invitations" in response.content.decode()
    invitation.refresh_from_db()
    assert invitation.status == "pending" and invitation.answered_by == ""


@pytest.mark.usefixtures("loads")
def test_a_post_without_the_csrf_token_is_refused(operator: User) -> None:
    invitation = _invitation()
    client = _client(operator, csrf=True)
    page = client.post(f"/demand-response/invitations/{invitation.pk}/accept", HTTP_ACCEPT="text/html")
    assert page.status_code == 403 and "security token" in page.content.decode()
    assert b"<!doctype html>" in page.content  # the product's layout
    invitation.refresh_from_db()
    assert invitation.status == "pending"


@pytest.mark.usefixtures("loads")
def test_answers_are_posts_only(operator: User) -> None:
    invitation = _invitation()
    assert _client(operator).get(f"/demand-response/invitations/{invitation.pk}/accept").status_code == 405


@pytest.mark.usefixtures("loads")
def test_an_event_report_shows_baseline_metered_load_and_the_method(operator: User) -> None:
    now = timezone.now()
    event = dr.event_create(target_kw=10, start=now + timedelta(minutes=30), end=now + timedelta(hours=1))
    # A stored measurement, as event_measure writes it (its numbers are the baselines' tests').
    from demand_response.models import DREvent

    report = {
        "method": "high_4of5",
        "ok": True,
        "day_type": "weekday",
        "days_used": ["2026-11-02", "2026-11-03", "2026-11-04", "2026-11-05"],
        "adjustment_kind": "additive",
        "adjustment": 1.5,
        "notes": [],
        "committed_kw": 10,
        "intervals": [
            {"start": "2026-11-06T14:00:00Z", "baseline_kw": 50.0, "actual_kw": 41.0, "delivered_kw": 9.0},
            {"start": "2026-11-06T14:15:00Z", "baseline_kw": 52.0, "actual_kw": 40.0, "delivered_kw": 12.0},
        ],
        "energy_delivered_kwh": 5.25,
        "mean_delivered_kw": 10.5,
        "share_of_commitment": 1.05,
        "intervals_missing": 0,
    }
    DREvent.objects.filter(pk=event.pk).update(performance=report, measured_kw=10.5, status="completed")
    page = _client(operator).get(f"/demand-response/events/{event.pk}/")
    html = page.content.decode()
    assert page.status_code == 200
    assert "Baseline method: PJM High 4 of 5" in html
    assert "10.5 <small>kW of 10.0 kW committed" in html and "105 % of the commitment" in html
    assert page.context["page"]["intervals"] == report["intervals"]
    assert page.context["page"]["committedKw"] == 10


@pytest.mark.usefixtures("loads")
def test_an_unmeasured_event_says_why(viewer: User) -> None:
    now = timezone.now()
    event = dr.event_create(target_kw=10, start=now + timedelta(minutes=30), end=now + timedelta(hours=1))
    html = _client(viewer).get(f"/demand-response/events/{event.pk}/").content.decode()
    assert "No measurement: not measured yet: the event is scheduled." in html
    assert "Baseline method: CAISO 10 of 10" in html


def test_an_unknown_event_is_a_404_page_for_a_browser_and_json_for_the_api(operator: User) -> None:
    client = _client(operator)
    page = client.get("/demand-response/events/999999/", HTTP_ACCEPT="text/html,application/xhtml+xml")
    assert page.status_code == 404 and b"<!doctype html>" in page.content
    assert "Page not found" in page.content.decode()
    api = client.get("/api/v1/demand-response/events/999999/", HTTP_ACCEPT="text/html")
    assert api.status_code == 404


def test_the_pages_answer_head_as_get(operator: User) -> None:
    client = _client(operator)
    assert client.head(PAGE).status_code == 200
    assert client.head("/ingestion/").status_code == 200
