"""The admin: operators accept or decline invitations and cancel events through the services."""

from __future__ import annotations

import inspect
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from demand_response import services
from demand_response.admin import FlexibleDeviceForm
from demand_response.models import DREvent, FlexibleDevice, Invitation
from demand_response.serializers import FlexibleDeviceSerializer

pytestmark = pytest.mark.django_db(databases="__all__")


def test_the_admin_form_the_api_and_the_service_take_the_one_list_of_device_settings() -> None:
    # The admin saves through device_create(name=..., **settings) and the API passes its
    # validated data: a setting missing from one of them would fail there, not here.
    settings = ["name", *FlexibleDevice.SETTINGS]
    assert list(FlexibleDeviceForm().fields) == settings
    assert [n for n, f in FlexibleDeviceSerializer().fields.items() if not f.read_only] == settings
    assert list(inspect.signature(services.device_create).parameters) == settings
    # Every field an operator may write is in it.
    editable = {f.name for f in FlexibleDevice._meta.concrete_fields if f.editable and not f.primary_key}
    assert editable == set(settings)


def invite() -> Invitation:
    start = timezone.now() + timedelta(hours=2)
    return services.invitation_create(
        reduction_kw=10, start=start, end=start + timedelta(hours=1), response_deadline=start
    )


def test_accept_and_decline_actions(loads: datetime, operator_client: Client) -> None:
    first, second = invite(), invite()
    url = "/admin/demand_response/invitation/"
    assert operator_client.get(url).status_code == 200
    operator_client.post(url, {"action": "accept", "_selected_action": [first.pk]})
    operator_client.post(url, {"action": "decline", "_selected_action": [second.pk]})
    first.refresh_from_db()
    second.refresh_from_db()
    # Both answers name the acting operator, in who answered and in the reason.
    assert (first.status, first.answered_by, first.reason) == (
        "accepted",
        "operator:op",
        "accepted by operator op in the admin",
    )
    assert (second.status, second.answered_by, second.reason) == (
        "declined",
        "operator:op",
        "declined by operator op in the admin",
    )
    event = DREvent.objects.get()
    assert operator_client.get(f"/admin/demand_response/drevent/{event.pk}/change/").status_code == 200
    cancelled = operator_client.post(
        "/admin/demand_response/drevent/", {"action": "cancel", "_selected_action": [event.pk]}, follow=True
    )
    event.refresh_from_db()
    assert (event.status, event.note) == ("cancelled", "cancelled by operator:op: in the admin")
    assert [str(m) for m in cancelled.context["messages"]] == ["1 event(s) cancelled."]


def test_admin_pages_open(loads: datetime, operator_client: Client) -> None:
    for page in ("flexibledevice", "autoresponsepolicy", "dispatchcommand", "flexibledevice/add"):
        assert operator_client.get(f"/admin/demand_response/{page}/").status_code == 200, page


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


def test_a_device_with_an_unknown_sensor_is_refused_by_the_form(
    plant: dict[str, FlexibleDevice], operator_client: Client
) -> None:
    response = operator_client.post(
        "/admin/demand_response/flexibledevice/add/", {**DEVICE_FORM, "sensor_id": "ghost-power"}, follow=True
    )
    # The form comes back with the service's reason, and nothing claims success.
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["sensor_id"] == [
        "Unknown sensor 'ghost-power': register it in the sensors module first."
    ]
    assert not [str(m) for m in response.context["messages"]]
    assert not FlexibleDevice.objects.filter(name="chiller").exists()


def test_changing_a_device_to_an_unknown_sensor_is_refused_by_the_form(
    plant: dict[str, FlexibleDevice], operator_client: Client
) -> None:
    url = f"/admin/demand_response/flexibledevice/{plant['ahu'].pk}/change/"
    body = {k: v for k, v in DEVICE_FORM.items() if k != "name"}
    response = operator_client.post(url, {**body, "sensor_id": "ghost-power"}, follow=True)
    assert response.status_code == 200
    assert "Unknown sensor &#x27;ghost-power&#x27;" in response.content.decode()
    assert not [str(m) for m in response.context["messages"]]
    assert FlexibleDevice.objects.get(name="ahu").sensor_id == "ahu-power"


def test_a_valid_device_is_created_through_the_service(
    plant: dict[str, FlexibleDevice], operator_client: Client
) -> None:
    response = operator_client.post("/admin/demand_response/flexibledevice/add/", DEVICE_FORM, follow=True)
    messages = [str(m) for m in response.context["messages"]]
    assert len(messages) == 1 and "was added successfully" in messages[0], messages
    # The service filled the room in from the sensor.
    assert FlexibleDevice.objects.get(name="chiller").room == "plant"


def test_a_refusal_at_save_time_shows_the_error_and_no_success(
    plant: dict[str, FlexibleDevice], operator_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The sensor is removed between the form's check and the save: the service refuses then.
    def refuse(**kwargs: Any) -> FlexibleDevice:
        raise services.DRError("Unknown sensor 'ahu-power': register it in the sensors module first.")

    monkeypatch.setattr(services, "device_update", refuse)
    url = f"/admin/demand_response/flexibledevice/{plant['ahu'].pk}/change/"
    body = {k: v for k, v in DEVICE_FORM.items() if k != "name"}
    response = operator_client.post(url, {**body, "max_shed_kw": "7"}, follow=True)
    assert [str(m) for m in response.context["messages"]] == [
        "Unknown sensor 'ahu-power': register it in the sensors module first."
    ]
    assert FlexibleDevice.objects.get(name="ahu").max_shed_kw == 30
