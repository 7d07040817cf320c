"""The admin: operators accept or decline invitations and cancel events through the services."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from demand_response import services
from demand_response.models import DREvent, Invitation

pytestmark = pytest.mark.django_db(databases="__all__")


@pytest.fixture
def operator_client(operator: Any) -> Client:
    client = Client()
    client.force_login(operator)
    return client


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
    assert (first.status, first.answered_by) == ("accepted", "operator:op")
    assert (second.status, second.reason) == ("declined", "declined by an operator (admin)")
    event = DREvent.objects.get()
    assert operator_client.get(f"/admin/demand_response/drevent/{event.pk}/change/").status_code == 200
    operator_client.post(
        "/admin/demand_response/drevent/", {"action": "cancel", "_selected_action": [event.pk]}
    )
    event.refresh_from_db()
    assert (event.status, event.note) == ("cancelled", "cancelled by operator:op: admin")


def test_admin_pages_open(loads: datetime, operator_client: Client) -> None:
    for page in ("flexibledevice", "autoresponsepolicy", "dispatchcommand", "flexibledevice/add"):
        assert operator_client.get(f"/admin/demand_response/{page}/").status_code == 200, page
