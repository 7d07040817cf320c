"""The overlap rule, stated once (`EventDevice.objects.overlapping`, and `holding_at` for now),
pinned at its edges, and read the same way by each of its users: flexibility over a window, a
new event naming the device, a new event taking the free devices, and flexibility now."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from demand_response import services
from demand_response.models import DREvent, EventDevice, FlexibleDevice

pytestmark = pytest.mark.django_db(databases="__all__")

HOUR = timedelta(hours=1)
TICK = timedelta(microseconds=1)
OPEN = ["scheduled", "active"]
CLOSED = ["completed", "cancelled"]

# Windows [start, end) as offsets from the other event's [T, T + 1 h), and whether they overlap.
WINDOWS = {
    "ends where it starts": (-HOUR, timedelta(0), False),
    "starts where it ends": (HOUR, 2 * HOUR, False),
    "one microsecond across its start": (-HOUR, TICK, True),
    "one microsecond across its end": (HOUR - TICK, 2 * HOUR, True),
    "inside it": (timedelta(minutes=10), timedelta(minutes=20), True),
    "around it": (-HOUR, 2 * HOUR, True),
    "the same window": (timedelta(0), HOUR, True),
}


def other_event(device: FlexibleDevice, status: str, start: datetime) -> DREvent:
    """An event of `status` on `device` over [start, start + 1 h), stored as the services would."""
    event = DREvent.objects.create(target_kw=5, start=start, end=start + HOUR, status=status)
    EventDevice.objects.create(event=event, device=device)
    return event


@pytest.mark.parametrize("status", OPEN + CLOSED)
@pytest.mark.parametrize("window", WINDOWS, ids=list(WINDOWS))
def test_every_user_of_the_rule_reads_the_same_edges(
    loads: datetime, plant: dict[str, FlexibleDevice], window: str, status: str
) -> None:
    ahu = plant["ahu"]
    t = timezone.now() + timedelta(days=1)
    other = other_event(ahu, status, t)
    before, after, overlaps = WINDOWS[window]
    start, end = t + before, t + after
    taken = overlaps and status in OPEN

    # The rule itself: half-open windows, only scheduled or active events hold a device.
    assert EventDevice.objects.overlapping(start, end).taken([ahu.pk]) == (
        {ahu.pk: other.pk} if taken else {}
    )
    # The event asking takes nothing from itself.
    assert EventDevice.objects.overlapping(start, end).taken([ahu.pk], exclude_event=other.pk) == {}

    # Flexibility over the window.
    flex = {d.device: d for d in services.flexibility_compute(start=start, end=end).devices}
    assert flex["ahu"].reason == (f"committed to event {other.pk}" if taken else None)
    asking = services.flexibility_compute(start=start, end=end, exclude_event=other.pk).devices
    assert {d.device: d.reason for d in asking}["ahu"] is None

    # A new event that names the device.
    if taken:
        with pytest.raises(services.Conflict, match=rf"ahu \(event {other.pk}\)"):
            services.event_create(target_kw=5, start=start, end=end, devices=["ahu"])
    else:
        named = services.event_create(target_kw=5, start=start, end=end, devices=["ahu"])
        assert [r.device.name for r in named.dispatches.all()] == ["ahu"]
        named.delete()

    # A new event that takes the free devices.
    free = services.event_create(target_kw=5, start=start, end=end)
    expected = ["ev", "lights"] if taken else ["ahu", "ev", "lights"]
    assert [r.device.name for r in free.dispatches.order_by("device__priority")] == expected


# Instants as offsets from the other event's [T, T + 1 h), and whether it holds its device
# then, by its status: an active event from its start until the scheduler completes it, even
# past its end; a scheduled one from its start until its end. Completed and cancelled: never.
INSTANTS = {
    "just before its start": (-TICK, {"scheduled": False, "active": False}),
    "at its start": (timedelta(0), {"scheduled": True, "active": True}),
    "just before its end": (HOUR - TICK, {"scheduled": True, "active": True}),
    "at its end": (HOUR, {"scheduled": False, "active": True}),
    "an hour past its end": (2 * HOUR, {"scheduled": False, "active": True}),
}


@pytest.mark.parametrize("status", OPEN + CLOSED)
@pytest.mark.parametrize("instant", INSTANTS, ids=list(INSTANTS))
def test_now_an_event_holds_its_device_from_its_start_until_it_is_completed(
    loads: datetime, plant: dict[str, FlexibleDevice], instant: str, status: str
) -> None:
    ahu = plant["ahu"]
    # Its window ends before the readings (a minute old), so they are fresh at every instant.
    t = loads - 2 * HOUR
    other = other_event(ahu, status, t)
    offset, holds = INSTANTS[instant]
    now = t + offset
    held = holds.get(status, False)

    assert EventDevice.objects.holding_at(now).taken([ahu.pk]) == ({ahu.pk: other.pk} if held else {})
    flex = {d.device: d for d in services.flexibility_compute(now=now).devices}
    assert flex["ahu"].reason == (f"committed to event {other.pk}" if held else None)
    asking = services.flexibility_compute(now=now, exclude_event=other.pk).devices
    assert {d.device: d.reason for d in asking}["ahu"] is None
