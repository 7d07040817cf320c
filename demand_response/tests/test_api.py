"""The demand-response API: viewers read, operators write; bad input is a 400 with a message."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connections
from django.utils import timezone
from rest_framework.test import APIClient

from demand_response import services
from demand_response.models import DREvent, FlexibleDevice, Invitation
from demand_response.tests.conftest import history

pytestmark = pytest.mark.django_db(databases="__all__")
BASE = "/api/v1/demand-response"


def iso(moment: datetime) -> str:
    return moment.isoformat()


def invitation_body(**changes: Any) -> dict[str, Any]:
    start = (timezone.now() + timedelta(hours=3)).replace(microsecond=0)
    body = {
        "reduction_kw": 20,
        "start": iso(start),
        "duration_minutes": 60,
        "response_deadline": iso(start - timedelta(hours=1)),
        "programme": "flex-day",
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def test_device_crud_by_operators(plant: dict[str, FlexibleDevice], operator_api: APIClient) -> None:
    created = operator_api.post(
        f"{BASE}/devices",
        {
            "name": "chiller",
            "sensor_id": "ahu-power",
            "category": "hvac",
            "max_shed_share": 0.3,
            "priority": 5,
        },
        format="json",
    )
    assert created.status_code == 201, created.json()
    assert created.json()["room"] == "plant"  # from its sensor
    changed = operator_api.patch(f"{BASE}/devices/chiller", {"priority": 7}, format="json")
    assert changed.json()["priority"] == 7
    assert operator_api.delete(f"{BASE}/devices/chiller").status_code == 204
    assert not FlexibleDevice.objects.filter(name="chiller").exists()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"sensor_id": "ghost-power", "max_shed_kw": 5},
            "sensor_id: Unknown sensor 'ghost-power': register it in the sensors module first.",
        ),
        ({"sensor_id": "ahu-power"}, "max_shed_kw: Give max_shed_kw, max_shed_share or both."),
        (
            {"sensor_id": "ahu-power", "max_shed_kw": -1},
            "max_shed_kw: Ensure this value is greater than or equal to 0.",
        ),
        ({"sensor_id": "ahu-power", "max_shed_share": 2}, "max_shed_share: Must be in (0, 1]."),
        ({"sensor_id": "ahu-power", "max_shed_kw": 1, "room": "attic"}, "room: Unknown room 'attic'."),
        (
            {"name": "ahu", "sensor_id": "ahu-power", "max_shed_kw": 1},
            "name: A device named 'ahu' exists already.",
        ),
    ],
)
def test_bad_devices_are_refused(
    plant: dict[str, FlexibleDevice], operator_api: APIClient, body: dict[str, Any], message: str
) -> None:
    response = operator_api.post(f"{BASE}/devices", {"name": "new", **body}, format="json")
    assert response.status_code == 400
    assert response.json()["message"] == message


def test_a_device_that_ran_in_an_event_cannot_be_deleted(loads: datetime, operator_api: APIClient) -> None:
    services.event_create(
        target_kw=5,
        start=timezone.now() + timedelta(hours=1),
        end=timezone.now() + timedelta(hours=2),
        devices=["ahu"],
    )
    response = operator_api.delete(f"{BASE}/devices/ahu")
    assert response.status_code == 400
    assert response.json()["message"] == "Device 'ahu' took part in events; disable it instead."


def test_viewers_read_and_cannot_write(loads: datetime, viewer_api: APIClient) -> None:
    services.invitation_create(**_service_invitation())
    for path in ("devices", "devices/ahu", "invitations", "events", "policy", "flexibility"):
        assert viewer_api.get(f"{BASE}/{path}").status_code == 200, path
    invitation = Invitation.objects.get()
    denied = [
        viewer_api.post(f"{BASE}/devices", {"name": "x", "sensor_id": "ahu-power", "max_shed_kw": 1}),
        viewer_api.delete(f"{BASE}/devices/ahu"),
        viewer_api.post(f"{BASE}/invitations", invitation_body(), format="json"),
        viewer_api.post(f"{BASE}/invitations/{invitation.pk}/accept", {}, format="json"),
        viewer_api.post(f"{BASE}/invitations/{invitation.pk}/decline", {"reason": "x"}, format="json"),
        viewer_api.put(f"{BASE}/policy", {"enabled": True}, format="json"),
    ]
    assert [r.status_code for r in denied] == [403] * len(denied)
    assert Invitation.objects.get().status == "pending"


def test_anonymous_is_refused(api: APIClient) -> None:
    assert api.get(f"{BASE}/invitations").status_code in (401, 403)


def _service_invitation() -> dict[str, Any]:
    start = timezone.now() + timedelta(hours=3)
    return {"reduction_kw": 20, "start": start, "end": start + timedelta(hours=1), "response_deadline": start}


def test_invitation_create_accept_and_show(loads: datetime, operator_api: APIClient) -> None:
    created = operator_api.post(
        f"{BASE}/invitations", invitation_body(external_id="vtn-7", source="openadr"), format="json"
    )
    assert created.status_code == 201, created.json()
    body = created.json()
    assert (body["status"], body["duration_minutes"], body["source"], body["event_id"]) == (
        "pending",
        60,
        "openadr",
        None,
    )
    accepted = operator_api.post(
        f"{BASE}/invitations/{body['id']}/accept", {"reason": "cheap hour"}, format="json"
    )
    assert accepted.status_code == 200, accepted.json()
    shown = accepted.json()
    assert (shown["status"], shown["answered_by"], shown["reason"]) == (
        "accepted",
        "operator:op",
        "cheap hour",
    )
    assert shown["committed_kw"] == 20
    assert shown["event_id"] == DREvent.objects.get().pk
    again = operator_api.post(
        f"{BASE}/invitations/{body['id']}/decline", {"reason": "changed my mind"}, format="json"
    )
    assert again.status_code == 409
    assert again.json()["message"] == f"Invitation {body['id']} is already accepted."
    listed = operator_api.get(f"{BASE}/invitations?status=accepted&source=openadr").json()
    assert [i["id"] for i in listed["results"]] == [body["id"]]


def test_accept_by_api_without_a_reason_records_who_accepted(
    loads: datetime, operator_api: APIClient
) -> None:
    invitation = services.invitation_create(**_service_invitation())
    accepted = operator_api.post(f"{BASE}/invitations/{invitation.pk}/accept", {}, format="json")
    assert accepted.status_code == 200, accepted.json()
    assert (accepted.json()["answered_by"], accepted.json()["reason"]) == (
        "operator:op",
        "accepted by operator op",
    )
    assert Invitation.objects.get().reason == "accepted by operator op"


def test_decline_by_api_needs_a_reason(loads: datetime, operator_api: APIClient) -> None:
    invitation = services.invitation_create(**_service_invitation())
    missing = operator_api.post(f"{BASE}/invitations/{invitation.pk}/decline", {}, format="json")
    assert missing.status_code == 400
    assert missing.json()["message"] == "reason: This field is required."
    done = operator_api.post(f"{BASE}/invitations/{invitation.pk}/decline", {"reason": "busy"}, format="json")
    assert (done.json()["status"], done.json()["reason"]) == ("declined", "busy")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"duration_minutes": None, "end": "start-1m"},
            "end: The invitation ends before it starts: end must be after start.",
        ),
        ({"reduction_kw": -3}, "reduction_kw: Ensure this value is greater than or equal to 0.001."),
        (
            {"response_deadline": "start+1m"},
            "response_deadline: The response deadline is after the start: it must be at or before the start.",
        ),
        ({"duration_minutes": None}, "Give end or duration_minutes."),
        ({"reduction_kw": "lots"}, "reduction_kw: A valid number is required."),
        # Once a 500 (OverflowError adding the duration to the start).
        ({"duration_minutes": 1e12}, "duration_minutes: Ensure this value is less than or equal to 10080."),
        ({"duration_minutes": 10081}, "duration_minutes: Ensure this value is less than or equal to 10080."),
        (
            {"duration_minutes": None, "end": "start+8d"},
            "end: The invitation lasts at most 7 days (10080 min).",
        ),
        ({"reduction_kw": 2e6}, "reduction_kw: Ensure this value is less than or equal to 1000000.0."),
    ],
)
def test_bad_invitations_are_400_with_a_message(
    operator_api: APIClient, changes: dict[str, Any], message: str
) -> None:
    body = invitation_body()
    start = datetime.fromisoformat(body["start"])
    for key, value in changes.items():
        if value == "start-1m":
            changes[key] = iso(start - timedelta(minutes=1))
        elif value == "start+1m":
            changes[key] = iso(start + timedelta(minutes=1))
        elif value == "start+8d":
            changes[key] = iso(start + timedelta(days=8))
    body = invitation_body(**changes)
    if changes.get("duration_minutes", 0) is None:
        body.pop("duration_minutes", None)
    response = operator_api.post(f"{BASE}/invitations", body, format="json")
    assert response.status_code == 400
    assert response.json()["message"] == message


def test_a_week_long_invitation_is_accepted_as_input(operator_api: APIClient) -> None:
    response = operator_api.post(
        f"{BASE}/invitations", invitation_body(duration_minutes=10080), format="json"
    )
    assert response.status_code == 201, response.json()
    assert response.json()["duration_minutes"] == 10080


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"target_kw": 1e9}, "target_kw: Ensure this value is less than or equal to 1000000.0."),
        ({"days": 8}, "end: The event lasts at most 7 days (10080 min)."),
    ],
)
def test_events_beyond_the_maxima_are_400_with_a_message(
    loads: datetime, operator_api: APIClient, changes: dict[str, Any], message: str
) -> None:
    start = (timezone.now() + timedelta(hours=1)).replace(microsecond=0)
    body = {
        "target_kw": changes.get("target_kw", 5),
        "start": iso(start),
        "end": iso(start + timedelta(days=changes.get("days", 1))),
    }
    response = operator_api.post(f"{BASE}/events", body, format="json")
    assert response.status_code == 400
    assert response.json()["message"] == message
    assert not DREvent.objects.exists()


def test_manual_event_cancel_and_performance(loads: datetime, operator_api: APIClient) -> None:
    start = (timezone.now() + timedelta(hours=1)).replace(microsecond=0)
    created = operator_api.post(
        f"{BASE}/events",
        {"target_kw": 8, "start": iso(start), "end": iso(start + timedelta(hours=1)), "devices": ["ev"]},
        format="json",
    )
    assert created.status_code == 201, created.json()
    event = created.json()
    assert (event["status"], event["created_by"], [d["device"] for d in event["dispatches"]]) == (
        "scheduled",
        "operator:op",
        ["ev"],
    )
    overlapping = operator_api.post(
        f"{BASE}/events",
        {"target_kw": 2, "start": iso(start), "end": iso(start + timedelta(minutes=15)), "devices": ["ev"]},
        format="json",
    )
    # A conflict with the device's current commitment, not bad input: 409.
    assert overlapping.status_code == 409
    assert overlapping.json() == {
        "message": f"Overlapping events on the same device are refused: ev (event {event['id']}).",
        "code": "conflict",
    }
    performance = operator_api.get(f"{BASE}/events/{event['id']}/performance").json()
    assert (performance["ok"], performance["reason"]) == (False, "not measured yet: the event is scheduled")
    assert operator_api.post(f"{BASE}/events/{event['id']}/measure").status_code == 409
    cancelled = operator_api.post(f"{BASE}/events/{event['id']}/cancel", {"reason": "storm"}, format="json")
    assert (cancelled.json()["status"], cancelled.json()["note"]) == (
        "cancelled",
        "cancelled by operator:op: storm",
    )
    assert operator_api.post(f"{BASE}/events/{event['id']}/cancel", {}, format="json").status_code == 409


def test_performance_of_a_completed_event(loads: datetime, viewer_api: APIClient) -> None:
    event = services.event_create(
        target_kw=5,
        start=timezone.now() + timedelta(minutes=1),
        end=timezone.now() + timedelta(minutes=31),
        devices=["lights"],
    )
    services.events_tick(now=event.start)
    services.events_tick(now=event.end)
    body = viewer_api.get(f"{BASE}/events/{event.pk}/performance").json()
    assert body["status"] == "completed"
    assert body["ok"] is False
    assert body["reason"].startswith("not enough data: 0 eligible weekdays") or body["reason"].startswith(
        "not enough data: 0 eligible weekend/holiday days"
    )
    assert body["sensors"] == ["lights-power"]


def test_performance_report_of_an_event_with_history(
    plant: dict[str, FlexibleDevice], viewer_api: APIClient, operator_api: APIClient
) -> None:
    # Wednesday 18 June 2025, 14:00-15:00 in Lisbon: the ahu drew 30 kW at every quarter-hour
    # of the weeks before and 12 kW during the event.
    start = datetime(2025, 6, 18, 13, tzinfo=UTC)
    end = start + timedelta(hours=1)
    history(ahu_kw=lambda m: 12.0 if start <= m < end else 30.0, ev_kw=20.0, until=end + timedelta(hours=1))
    event = services.event_create(target_kw=15, start=start, end=end, devices=["ahu", "ev"], now=start)
    services.event_activate(event=event, now=start)
    services.event_complete(event=event, now=end)
    body = viewer_api.get(f"{BASE}/events/{event.pk}/performance").json()
    assert {k: body[k] for k in ("event_id", "status", "target_kw", "ok", "reason", "method", "sensors")} == {
        "event_id": event.pk,
        "status": "completed",
        "target_kw": 15,
        "ok": True,
        "reason": None,
        "method": "caiso_10of10",
        "sensors": ["ahu-power"],
    }
    assert (body["measured_from"], body["measured_to"]) == ("2025-06-18T13:00:00Z", "2025-06-18T14:00:00Z")
    # Ten weekdays back from the day before; no same-day change, so no adjustment.
    assert len(body["days_used"]) == 10
    assert (body["days_used"][0], body["days_used"][-1]) == ("2025-06-17", "2025-06-04")
    assert body["adjustment"] == pytest.approx(1.0)
    assert body["intervals"] == [
        {
            "start": f"2025-06-18T13:{minute:02d}:00Z",
            "baseline_kw": pytest.approx(30.0),
            "actual_kw": pytest.approx(12.0),
            "delivered_kw": pytest.approx(18.0),
            "delivered_kwh": pytest.approx(4.5),
        }
        for minute in (0, 15, 30, 45)
    ]
    assert body["energy_delivered_kwh"] == pytest.approx(18.0)
    assert body["mean_delivered_kw"] == pytest.approx(18.0)
    assert body["measured_kw"] == pytest.approx(18.0)
    assert body["share_of_commitment"] == pytest.approx(1.2)
    assert body["intervals_missing"] == 0
    # Measuring again gives the same report.
    again = operator_api.post(f"{BASE}/events/{event.pk}/measure")
    assert again.status_code == 200
    assert again.json()["intervals"] == body["intervals"]


def test_measure_refusals_are_json_errors(
    loads: datetime, operator_api: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    event = services.event_create(
        target_kw=5,
        start=timezone.now() + timedelta(minutes=1),
        end=timezone.now() + timedelta(minutes=31),
        devices=["lights"],
    )
    services.events_tick(now=event.start)
    services.events_tick(now=event.end)

    def refuse(**kwargs: Any) -> DREvent:
        raise services.DRError("The event's sensors are gone.")

    monkeypatch.setattr(services, "event_measure", refuse)
    response = operator_api.post(f"{BASE}/events/{event.pk}/measure")
    assert response.status_code == 400
    assert response.json()["message"] == "The event's sensors are gone."


def test_policy_get_and_put(plant: dict[str, FlexibleDevice], operator_api: APIClient) -> None:
    assert operator_api.get(f"{BASE}/policy").json()["enabled"] is False
    rules = {
        "enabled": True,
        "allowed_days": [0, 1, 2, 3, 4],
        "allowed_from_hour": 8,
        "allowed_until_hour": 20,
        "max_duration_minutes": 120,
        "min_notice_minutes": 30,
        "max_share": 0.6,
        "excluded_devices": ["lights"],
    }
    saved = operator_api.put(f"{BASE}/policy", rules, format="json")
    assert saved.status_code == 200, saved.json()
    assert {k: saved.json()[k] for k in rules} == rules
    assert saved.json()["updated_by"] == "operator:op"
    bad = operator_api.patch(f"{BASE}/policy", {"excluded_devices": ["ghost"]}, format="json")
    assert bad.status_code == 400
    assert bad.json()["message"] == "excluded_devices: Unknown devices in excluded_devices: ghost."
    assert services.policy_get().excluded_devices == ["lights"]


def test_list_endpoints_do_not_grow_in_queries(
    loads: datetime, viewer_api: APIClient, django_assert_max_num_queries: Any
) -> None:
    for i in range(8):
        start = timezone.now() + timedelta(days=1 + i)
        invitation = services.invitation_create(
            reduction_kw=5, start=start, end=start + timedelta(hours=1), response_deadline=start
        )
        services.invitation_accept(invitation=invitation, answered_by="operator:op")
    for i in range(20):
        services.device_create(name=f"fan-{i}", sensor_id="ahu-power", max_shed_kw=1)
    # The module's own database: a count and the page (plus prefetches), whatever the rows.
    for path, most in (("invitations", 2), ("events", 4), ("devices", 2)):
        with django_assert_max_num_queries(most, connection=connections["demand_response"]):
            response = viewer_api.get(f"{BASE}/{path}")
        assert response.status_code == 200
        assert response.json()["count"] >= 8


def test_overview_counts(loads: datetime) -> None:
    invitation = services.invitation_create(**_service_invitation())
    services.invitation_create(**_service_invitation())
    services.invitation_accept(invitation=invitation, answered_by="operator:op")
    counts = services.overview()
    assert counts["devices"] == 3
    assert counts["devices_enabled"] == 3
    assert counts["invitations_pending"] == 1
    assert counts["invitations_by_status"] == {"pending": 1, "accepted": 1}
    assert counts["events_scheduled"] == 1
    assert counts["events_active"] == 0
