"""Every duration, count, power and date the API, the admin and the OpenADR VEN accept is bounded
to what the product computes with (energy_dashboard/core/limits.py; docs/demand-response.md,
"Bounds"): past a bound the answer is a 400 naming the field, and nothing is stored.

The bounds are written out here as numbers, not imported, so a test also fails when a bound
moves without the documentation."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from demand_response import openadr, services
from demand_response.models import AutoResponsePolicy, DREvent, FlexibleDevice, Invitation
from energy_dashboard.core import limits
from sensors import services as sensors_services

pytestmark = pytest.mark.django_db(databases="__all__")
BASE = "/api/v1/demand-response"
MAX_KW = 1_000_000
MAX_MINUTES = 7 * 24 * 60  # MAX_DURATION, 7 days
AHEAD_MINUTES = 731 * 24 * 60  # limits.SCHEDULE_AHEAD
MAX_NAMES = 1000
NAMES = [f"d-{i}" for i in range(MAX_NAMES + 1)]


def iso(moment: datetime) -> str:
    return moment.isoformat()


def soon(hours: float = 3) -> datetime:
    return (timezone.now() + timedelta(hours=hours)).replace(microsecond=0)


def refused(response: Any, field: str) -> None:
    """A 400 whose errors name `field` and whose message starts with it."""
    assert response.status_code == 400, (response.status_code, response.content)
    body = response.json()
    assert field in body["errors"], body
    assert body["message"].startswith(f"{field}: "), body


# --- Devices ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"max_shed_kw": 1e308}, "max_shed_kw"),
        ({"max_shed_kw": MAX_KW + 1}, "max_shed_kw"),
        ({"max_shed_kw": -1}, "max_shed_kw"),
        ({"max_shed_kw": None}, "max_shed_kw"),  # no limit at all
        ({"max_shed_share": 2}, "max_shed_share"),
        ({"max_shed_kw": None, "max_shed_share": 0}, "max_shed_share"),
        ({"priority": 2**63}, "priority"),
        ({"priority": 2**62}, "priority"),
        ({"priority": 1_000_001}, "priority"),
        ({"min_event_minutes": MAX_MINUTES + 1}, "min_event_minutes"),
        ({"max_event_minutes": MAX_MINUTES + 1}, "max_event_minutes"),
        ({"max_event_minutes": 2**62}, "max_event_minutes"),
        ({"min_event_minutes": 60, "max_event_minutes": 30}, "max_event_minutes"),
        ({"sensor_id": "ghost-power"}, "sensor_id"),
        ({"room": "attic"}, "room"),
    ],
)
def test_a_device_past_a_bound_is_a_400_naming_the_field(
    plant: dict[str, FlexibleDevice], operator_api: APIClient, changes: dict[str, Any], field: str
) -> None:
    body = {"name": "new", "sensor_id": "ahu-power", "max_shed_kw": 5, **changes}
    refused(operator_api.post(f"{BASE}/devices", body, format="json"), field)
    assert not FlexibleDevice.objects.filter(name="new").exists()


def test_a_device_at_its_bounds_is_accepted(
    plant: dict[str, FlexibleDevice], operator_api: APIClient
) -> None:
    body = {
        "name": "big",
        "sensor_id": "ahu-power",
        "max_shed_kw": MAX_KW,
        "max_shed_share": 1,
        "priority": 1_000_000,
        "min_event_minutes": MAX_MINUTES,
        "max_event_minutes": MAX_MINUTES,
    }
    response = operator_api.post(f"{BASE}/devices", body, format="json")
    assert response.status_code == 201, response.json()


def test_a_device_change_past_a_bound_is_refused(
    plant: dict[str, FlexibleDevice], operator_api: APIClient
) -> None:
    refused(operator_api.patch(f"{BASE}/devices/ahu", {"max_shed_kw": 1e308}, format="json"), "max_shed_kw")
    assert FlexibleDevice.objects.get(name="ahu").max_shed_kw == 30


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -0.5, 2e6])
def test_the_device_service_refuses_what_the_api_refuses(
    plant: dict[str, FlexibleDevice], value: float
) -> None:
    # Python callers (commands, the admin) reach the service without a serializer.
    with pytest.raises(services.DRError) as refusal:
        services.device_create(name="new", sensor_id="ahu-power", max_shed_kw=value)
    assert "max_shed_kw" in refusal.value.errors
    with pytest.raises(services.DRError) as refusal:
        services.device_update(device=plant["ahu"], max_shed_kw=value)
    assert "max_shed_kw" in refusal.value.errors
    assert FlexibleDevice.objects.get(name="ahu").max_shed_kw == 30


def test_a_device_whose_sensor_is_gone_can_still_be_disabled(
    plant: dict[str, FlexibleDevice], operator_api: APIClient
) -> None:
    # sensor_register returns the stored sensor: the only way to it through sensors.services.
    sensors_services.sensor_delete(
        sensor=sensors_services.sensor_register(sensor_id="ahu-power", kind="power")
    )
    response = operator_api.patch(f"{BASE}/devices/ahu", {"enabled": False}, format="json")
    assert response.status_code == 200, response.json()
    assert FlexibleDevice.objects.get(name="ahu").enabled is False
    # Pointing it at another unknown sensor is still refused.
    refused(operator_api.patch(f"{BASE}/devices/ahu", {"sensor_id": "ghost"}, format="json"), "sensor_id")


# --- Invitations -----------------------------------------------------------------------------------


def invitation_body(start: datetime | None = None, **changes: Any) -> dict[str, Any]:
    start = start or soon()
    body: dict[str, Any] = {
        "reduction_kw": 20,
        "start": iso(start),
        "duration_minutes": 60,
        "response_deadline": iso(start - timedelta(hours=1)),
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


FAR = datetime(9999, 12, 31, tzinfo=UTC)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        # Once accepted: then auto_response_tick raised OverflowError every 30 s.
        (lambda: invitation_body(FAR, response_deadline=iso(FAR - timedelta(days=1))), "start"),
        (lambda: invitation_body(limits.LATEST, response_deadline=iso(limits.LATEST)), "start"),
        (lambda: invitation_body(timezone.now() + timedelta(minutes=AHEAD_MINUTES + 60)), "start"),
        (lambda: invitation_body(datetime(1900, 1, 1, tzinfo=UTC)), "start"),
        (lambda: invitation_body(response_deadline="1900-01-01T00:00:00Z"), "response_deadline"),
        (lambda: invitation_body(response_deadline=iso(soon(4))), "response_deadline"),
        # Once a 500 (OverflowError in timedelta).
        (lambda: invitation_body(duration_minutes=-1e300), "duration_minutes"),
        (lambda: invitation_body(duration_minutes=-5), "duration_minutes"),
        (lambda: invitation_body(duration_minutes=0), "duration_minutes"),
        (lambda: invitation_body(duration_minutes=-0.0), "duration_minutes"),
        (lambda: invitation_body(duration_minutes=1e-300), "duration_minutes"),
        (lambda: invitation_body(duration_minutes=2**63), "duration_minutes"),
        (lambda: invitation_body(duration_minutes=MAX_MINUTES + 1), "duration_minutes"),
        (lambda: invitation_body(duration_minutes=None, end=iso(soon(3 + 24 * 8))), "end"),
        (lambda: invitation_body(duration_minutes=None, end=iso(soon(2))), "end"),
        (lambda: invitation_body(duration_minutes=None, end="9999-12-31T23:59:59-12:00"), "end"),
        (lambda: {**invitation_body(), "start": "0001-01-01T00:00:00+14:00"}, "start"),
        (lambda: invitation_body(reduction_kw=0.0001), "reduction_kw"),
        (lambda: invitation_body(reduction_kw=-0.0), "reduction_kw"),
        (lambda: invitation_body(reduction_kw=0), "reduction_kw"),
        (lambda: invitation_body(reduction_kw=1e308), "reduction_kw"),
        (lambda: invitation_body(reduction_kw="1e999"), "reduction_kw"),
        (lambda: invitation_body(reduction_kw="NaN"), "reduction_kw"),
    ],
)
def test_an_invitation_past_a_bound_is_a_400_naming_the_field(
    operator_api: APIClient, body: Callable[[], dict[str, Any]], field: str
) -> None:
    refused(operator_api.post(f"{BASE}/invitations", body(), format="json"), field)
    assert not Invitation.objects.exists()


def test_an_invitation_at_its_bounds_is_accepted(operator_api: APIClient) -> None:
    latest = (timezone.now() + timedelta(minutes=AHEAD_MINUTES - 60)).replace(microsecond=0)
    for body in (
        invitation_body(latest, reduction_kw=0.001, duration_minutes=MAX_MINUTES),
        invitation_body(reduction_kw=MAX_KW, duration_minutes=1),
    ):
        response = operator_api.post(f"{BASE}/invitations", body, format="json")
        assert response.status_code == 201, response.json()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"reduction_kw": 5e6}, "reduction_kw"),
        ({"reduction_kw": float("nan")}, "reduction_kw"),
        ({"days": 30}, "end"),
        ({"start": FAR}, "start"),
        ({"start": timezone.now() + timedelta(days=800)}, "start"),
    ],
)
def test_the_invitation_service_refuses_what_the_api_refuses(changes: dict[str, Any], field: str) -> None:
    # The OpenADR VEN records invitations through the service, with no serializer in front.
    start = changes.get("start", soon())
    with pytest.raises(services.DRError) as refusal:
        services.invitation_create(
            reduction_kw=changes.get("reduction_kw", 10),
            start=start,
            end=start + timedelta(days=changes.get("days", 0), hours=1),
            response_deadline=start,
            source="openadr",
            external_id="e-1",
        )
    assert field in refusal.value.errors
    assert not Invitation.objects.exists()


# --- OpenADR events --------------------------------------------------------------------------------


def oadr_event(
    start: datetime, duration: timedelta, *, ramp_up: timedelta | None = None, payload: float = -7
) -> dict[str, Any]:
    period: dict[str, Any] = {"dtstart": start, "duration": duration}
    if ramp_up is not None:
        period["ramp_up_period"] = ramp_up
    return {
        "event_descriptor": {"event_id": "e-far", "market_context": "oadr://x/prog"},
        "active_period": period,
        "event_signals": [
            {
                "signal_name": "LOAD_DISPATCH",
                "signal_type": "delta",
                "intervals": [{"signal_payload": payload}],
            }
        ],
    }


@pytest.mark.parametrize(
    "event",
    [
        # Past year 9999: start + duration raised OverflowError, which on_event did not catch.
        oadr_event(datetime(9999, 12, 31, 23, tzinfo=UTC), timedelta(hours=2)),
        oadr_event(datetime(1, 1, 1, 0, 10, tzinfo=UTC), timedelta(hours=1), ramp_up=timedelta(hours=1)),
        oadr_event(datetime(2030, 1, 1, tzinfo=UTC), timedelta(days=999_999_999)),
    ],
)
def test_an_openadr_event_past_the_calendar_is_not_understood(event: dict[str, Any]) -> None:
    with pytest.raises(openadr.EventNotUnderstood):
        openadr.invitation_fields(event)


def test_a_simple_level_of_infinity_is_not_understood() -> None:
    signal = {
        "signal_name": "SIMPLE",
        "signal_type": "level",
        "intervals": [{"signal_payload": float("inf")}],
    }
    with pytest.raises(openadr.EventNotUnderstood):
        openadr.requested_reduction_kw([signal], simple_level_kw={1: 10})


@pytest.mark.parametrize(
    ("event", "field"),
    [
        (oadr_event(datetime(9999, 12, 30, tzinfo=UTC), timedelta(hours=1)), "start"),
        (oadr_event(soon(), timedelta(days=30)), "end"),
        (oadr_event(soon(), timedelta(hours=1), payload=-5e9), "reduction_kw"),
        (oadr_event(soon(), timedelta(hours=1), ramp_up=timedelta(days=-1)), "response_deadline"),
    ],
)
def test_an_openadr_event_past_a_bound_is_refused_as_an_invitation(event: dict[str, Any], field: str) -> None:
    # What on_event records (openadr._record, less its connection handling for its own thread):
    # the refusal becomes an optOut, and nothing is stored.
    with pytest.raises(services.DRError) as refusal:
        services.invitation_create(**openadr.invitation_fields(event))
    assert field in refusal.value.errors
    assert not Invitation.objects.exists()


# --- Events ----------------------------------------------------------------------------------------


def event_body(start: datetime | None = None, **changes: Any) -> dict[str, Any]:
    start = start or soon(1)
    body: dict[str, Any] = {"target_kw": 5, "start": iso(start), "end": iso(start + timedelta(hours=1))}
    body.update(changes)
    return body


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (lambda: event_body(timezone.now() + timedelta(minutes=AHEAD_MINUTES + 60)), "start"),
        (lambda: event_body(datetime(9999, 12, 31, 22, tzinfo=UTC)), "start"),
        (lambda: event_body(target_kw=-0.0), "target_kw"),
        (lambda: event_body(target_kw=0.0001), "target_kw"),
        (lambda: event_body(target_kw=1e308), "target_kw"),
        (lambda: event_body(end=iso(soon(0.5))), "end"),
        (lambda: event_body(end=iso(soon(1 + 24 * 8))), "end"),
        (lambda: event_body(timezone.now() - timedelta(days=2)), "end"),  # ends in the past
        (lambda: event_body(devices=NAMES), "devices"),
    ],
)
def test_an_event_past_a_bound_is_a_400_naming_the_field(
    loads: datetime, operator_api: APIClient, body: Callable[[], dict[str, Any]], field: str
) -> None:
    refused(operator_api.post(f"{BASE}/events", body(), format="json"), field)
    assert not DREvent.objects.exists()


def test_an_event_at_its_bounds_is_accepted(loads: datetime, operator_api: APIClient) -> None:
    latest = (timezone.now() + timedelta(minutes=AHEAD_MINUTES - 60 * 24 * 8)).replace(microsecond=0)
    body = event_body(latest, target_kw=MAX_KW, end=iso(latest + timedelta(minutes=MAX_MINUTES)))
    response = operator_api.post(f"{BASE}/events", body, format="json")
    assert response.status_code == 201, response.json()


# An event's length is real time, not the building's wall clock: the API reads datetimes into
# the building's zone, where Python subtracts and compares wall-clock times. Seen in a
# `--clock=2026-03-29T00:30` run, where the bound test above spanned 26 March 2028.
@pytest.mark.clock("2026-03-20T12:00:00+00:00")
@pytest.mark.parametrize(
    ("start", "end", "status"),
    [
        # 7 days across the spring change (the wall clock says 7 days and an hour).
        ("2026-03-25T12:00:00Z", "2026-04-01T12:00:00Z", 201),
        # 7 days and 30 minutes across the autumn change (the wall clock says 6 days 23:30).
        ("2026-10-21T12:00:00Z", "2026-10-28T12:30:00Z", 400),
        # 40 minutes in the repeated hour: 01:30 summer time to 01:10 winter time.
        ("2026-10-25T01:30:00+01:00", "2026-10-25T01:10:00+00:00", 201),
    ],
    ids=["7-days-across-spring", "over-7-days-across-autumn", "inside-the-repeated-hour"],
)
def test_an_events_length_is_real_time_across_daylight_saving_changes(
    loads: datetime, operator_api: APIClient, start: str, end: str, status: int
) -> None:
    response = operator_api.post(
        f"{BASE}/events", {"target_kw": 5, "start": start, "end": end}, format="json"
    )
    assert response.status_code == status, response.json()
    if status == 400:
        assert "end" in response.json()["errors"]


@pytest.mark.clock("2026-03-20T12:00:00+00:00")
def test_an_invitations_duration_is_real_time_across_the_spring_change(
    loads: datetime, operator_api: APIClient
) -> None:
    # 00:30 winter time plus 120 minutes is 03:30 summer time, not 02:30 on the wall clock.
    body = invitation_body(datetime(2026, 3, 29, 0, 30, tzinfo=UTC), duration_minutes=120)
    response = operator_api.post(f"{BASE}/invitations", body, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["duration_minutes"] == 120
    assert Invitation.objects.get().end == datetime(2026, 3, 29, 2, 30, tzinfo=UTC)


def test_the_event_service_refuses_what_the_api_refuses(plant: dict[str, FlexibleDevice]) -> None:
    start = soon(1)
    for kw in (float("nan"), float("inf"), 5e6):
        with pytest.raises(services.DRError) as refusal:
            services.event_create(target_kw=kw, start=start, end=start + timedelta(hours=1))
        assert "target_kw" in refusal.value.errors
    far = datetime(9999, 12, 31, 22, tzinfo=UTC)
    with pytest.raises(services.DRError) as refusal:
        services.event_create(target_kw=5, start=far, end=far + timedelta(hours=1))
    assert "start" in refusal.value.errors
    assert not DREvent.objects.exists()


# --- Answers ---------------------------------------------------------------------------------------


def test_accepting_with_too_many_devices_is_a_400_naming_the_field(
    loads: datetime, operator_api: APIClient
) -> None:
    start = soon()
    invitation = services.invitation_create(
        reduction_kw=5, start=start, end=start + timedelta(hours=1), response_deadline=start
    )
    response = operator_api.post(
        f"{BASE}/invitations/{invitation.pk}/accept", {"devices": NAMES}, format="json"
    )
    refused(response, "devices")


# --- The auto-response policy ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        # Once accepted on SQLite: then the auto-response raised OverflowError.
        ({"min_notice_minutes": 2**62}, "min_notice_minutes"),
        ({"min_notice_minutes": AHEAD_MINUTES + 1}, "min_notice_minutes"),
        ({"max_duration_minutes": MAX_MINUTES + 1}, "max_duration_minutes"),
        ({"max_duration_minutes": 0}, "max_duration_minutes"),
        ({"allowed_days": []}, "allowed_days"),
        ({"allowed_days": [7]}, "allowed_days"),
        ({"allowed_from_hour": 24}, "allowed_from_hour"),
        ({"allowed_until_hour": 0}, "allowed_until_hour"),
        ({"allowed_until_hour": 25}, "allowed_until_hour"),
        ({"allowed_from_hour": 10, "allowed_until_hour": 10}, "allowed_until_hour"),
        ({"max_share": 0}, "max_share"),
        ({"max_share": 1.5}, "max_share"),
        ({"excluded_devices": NAMES}, "excluded_devices"),
        ({"excluded_devices": ["ghost"]}, "excluded_devices"),
    ],
)
def test_a_policy_past_a_bound_is_a_400_naming_the_field(
    plant: dict[str, FlexibleDevice], operator_api: APIClient, changes: dict[str, Any], field: str
) -> None:
    before = services.policy_get()
    refused(operator_api.patch(f"{BASE}/policy", changes, format="json"), field)
    after = AutoResponsePolicy.objects.get()
    assert (after.min_notice_minutes, after.allowed_days, after.max_duration_minutes) == (
        before.min_notice_minutes,
        before.allowed_days,
        before.max_duration_minutes,
    )


def test_a_list_of_as_many_device_names_as_allowed_is_looked_up(
    plant: dict[str, FlexibleDevice], operator_api: APIClient
) -> None:
    # 1,000 names pass the count bound; then they are unknown devices, which the service says.
    response = operator_api.patch(f"{BASE}/policy", {"excluded_devices": NAMES[:MAX_NAMES]}, format="json")
    assert response.status_code == 400
    assert response.json()["message"].startswith(
        "excluded_devices: Unknown devices in excluded_devices: d-0, d-1"
    )


def test_a_policy_at_its_bounds_is_accepted(
    plant: dict[str, FlexibleDevice], operator_api: APIClient
) -> None:
    rules = {
        "min_notice_minutes": AHEAD_MINUTES,
        "max_duration_minutes": MAX_MINUTES,
        "allowed_days": [6],
        "allowed_from_hour": 23,
        "allowed_until_hour": 24,
        "max_share": 1,
    }
    response = operator_api.patch(f"{BASE}/policy", rules, format="json")
    assert response.status_code == 200, response.json()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"min_notice_minutes": 2**62}, "min_notice_minutes"),
        ({"allowed_days": []}, "allowed_days"),
        ({"allowed_days": [True]}, "allowed_days"),
        ({"max_share": float("nan")}, "max_share"),
        ({"max_duration_minutes": 10**9}, "max_duration_minutes"),
    ],
)
def test_the_policy_service_refuses_what_the_api_refuses(
    plant: dict[str, FlexibleDevice], changes: dict[str, Any], field: str
) -> None:
    with pytest.raises(services.DRError) as refusal:
        services.policy_update(updated_by="test", **changes)
    assert field in refusal.value.errors


# --- Flexibility -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"start": "1900-01-01T00:00:00Z", "end": "1900-01-01T01:00:00Z"}, "start"),
        ({"start": "2199-12-31T00:00:00Z", "end": "2200-01-01T01:00:00Z"}, "end"),
    ],
)
def test_a_flexibility_window_outside_the_horizon_is_a_400_naming_the_field(
    plant: dict[str, FlexibleDevice], viewer_api: APIClient, query: dict[str, str], field: str
) -> None:
    refused(viewer_api.get(f"{BASE}/flexibility", query), field)


# --- The admin -------------------------------------------------------------------------------------


DEVICE_FORM = {
    "name": "chiller",
    "sensor_id": "ahu-power",
    "room": "",
    "category": "hvac",
    "max_shed_kw": "12",
    "max_shed_share": "",
    "priority": "5",
    "min_event_minutes": "0",
    "max_event_minutes": "",
    "enabled": "on",
}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"max_shed_kw": "1e308"}, "max_shed_kw"),
        ({"max_shed_kw": "1000001"}, "max_shed_kw"),
        ({"priority": str(2**62)}, "priority"),
        ({"min_event_minutes": str(MAX_MINUTES + 1)}, "min_event_minutes"),
        ({"max_event_minutes": str(2**62)}, "max_event_minutes"),
        ({"sensor_id": "ghost-power"}, "sensor_id"),
    ],
)
def test_the_admin_device_form_refuses_past_a_bound(
    plant: dict[str, FlexibleDevice], operator_client: Client, changes: dict[str, str], field: str
) -> None:
    response = operator_client.post(
        "/admin/demand_response/flexibledevice/add/", {**DEVICE_FORM, **changes}, follow=True
    )
    assert response.status_code == 200
    assert field in response.context["adminform"].form.errors
    assert not FlexibleDevice.objects.filter(name="chiller").exists()


POLICY_FORM = {
    "enabled": "on",
    "allowed_days": "[0, 1, 2, 3, 4]",
    "allowed_from_hour": "0",
    "allowed_until_hour": "24",
    "max_duration_minutes": "240",
    "min_notice_minutes": "60",
    "max_share": "0.8",
    "excluded_devices": "[]",
}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"min_notice_minutes": str(2**62)}, "min_notice_minutes"),
        ({"min_notice_minutes": str(AHEAD_MINUTES + 1)}, "min_notice_minutes"),
        ({"max_duration_minutes": str(MAX_MINUTES + 1)}, "max_duration_minutes"),
        ({"allowed_days": "[]"}, "allowed_days"),
        ({"allowed_days": '"weekdays"'}, "allowed_days"),
        ({"allowed_until_hour": "25"}, "allowed_until_hour"),
        ({"excluded_devices": "5"}, "excluded_devices"),
    ],
)
def test_the_admin_policy_form_refuses_past_a_bound(
    plant: dict[str, FlexibleDevice], operator_client: Client, changes: dict[str, str], field: str
) -> None:
    services.policy_get()
    response = operator_client.post(
        "/admin/demand_response/autoresponsepolicy/1/change/", {**POLICY_FORM, **changes}, follow=True
    )
    assert response.status_code == 200
    assert field in response.context["adminform"].form.errors
    stored = AutoResponsePolicy.objects.get()
    assert (stored.enabled, stored.min_notice_minutes, stored.allowed_days) == (False, 60, [0, 1, 2, 3, 4])


def test_the_admin_policy_form_saves_within_the_bounds(
    plant: dict[str, FlexibleDevice], operator_client: Client
) -> None:
    services.policy_get()
    response = operator_client.post(
        "/admin/demand_response/autoresponsepolicy/1/change/",
        {**POLICY_FORM, "min_notice_minutes": str(AHEAD_MINUTES)},
        follow=True,
    )
    assert response.status_code == 200
    assert AutoResponsePolicy.objects.get().min_notice_minutes == AHEAD_MINUTES
