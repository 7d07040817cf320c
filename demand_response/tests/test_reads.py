"""The reads the pages share: invitations and events, newest first, bounded."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from demand_response import services
from demand_response.services.summary import LIST_MAX

pytestmark = pytest.mark.django_db(databases="__all__")


def _invitation(hours: int) -> Any:
    now = timezone.now()
    return services.invitation_create(
        reduction_kw=5,
        start=now + timedelta(hours=hours),
        end=now + timedelta(hours=hours + 1),
        response_deadline=now + timedelta(minutes=30),
    )


def test_invitations_newest_start_first_by_status_and_bounded() -> None:
    early, late = _invitation(2), _invitation(5)
    services.invitation_decline(invitation=early.pk, answered_by="operator:x", reason="busy")
    assert [i.pk for i in services.invitations_list()] == [late.pk, early.pk]
    assert [i.pk for i in services.invitations_list(status="pending")] == [late.pk]
    assert [i.pk for i in services.invitations_list(limit=1)] == [late.pk]
    assert services.invitations_list(limit=-3) == []
    assert len(services.invitations_list(limit=10**9)) == 2 and LIST_MAX == 200


@pytest.mark.usefixtures("plant")
def test_events_newest_first_with_their_devices_and_one_by_id(django_assert_max_num_queries: Any) -> None:
    now = timezone.now()
    first = services.event_create(target_kw=5, start=now + timedelta(hours=1), end=now + timedelta(hours=2))
    second = services.event_create(target_kw=5, start=now + timedelta(hours=3), end=now + timedelta(hours=4))
    with django_assert_max_num_queries(3):
        listed = services.events_list()
        names = [[d.device.name for d in e.dispatches.all()] for e in listed]
    assert [e.pk for e in listed] == [second.pk, first.pk]
    assert names == [["ahu", "ev", "lights"]] * 2
    found = services.event_get(event_id=first.pk)
    assert found is not None and found.pk == first.pk
    assert services.event_get(event_id=999_999) is None
