"""The scheduler: activation and dispatch in priority order, completion, cancellation, overlap,
each transition once; and the delivery measurement at completion."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from demand_response import services
from demand_response.models import DispatchCommand, DREvent, FlexibleDevice
from demand_response.tests.conftest import history, power

pytestmark = pytest.mark.django_db(databases="__all__")


def soon(target_kw: float, devices: list[str] | None = None, minutes: int = 30) -> DREvent:
    start = timezone.now() + timedelta(minutes=5)
    return services.event_create(
        target_kw=target_kw, start=start, end=start + timedelta(minutes=minutes), devices=devices
    )


def dispatch(event: DREvent) -> list[tuple[str, str, float | None, str]]:
    return [
        (r.device.name, r.status, r.dispatched_kw, r.note) for r in event.dispatches.select_related("device")
    ]


def test_activation_sheds_in_priority_order_until_the_target_is_covered(
    loads: datetime, committed: Callable[..., Any], dr_events: list[dict[str, Any]]
) -> None:
    event = soon(35)
    at = event.start + timedelta(seconds=1)
    assert committed(services.events_tick, now=at) == {
        "activated": 1,
        "completed": 0,
        "missed": 0,
        "errors": 0,
    }
    event.refresh_from_db()
    assert (event.status, event.activated_at, event.dispatched_kw, event.note) == ("active", at, 35, "")
    assert dispatch(event) == [
        ("ahu", "shed", 30.0, ""),
        ("ev", "shed", 5.0, ""),
        ("lights", "skipped", None, "target already covered"),
    ]
    commands = list(DispatchCommand.objects.select_related("device"))
    assert [(c.device.name, c.action, c.kw, c.until, c.mqtt) for c in commands] == [
        ("ahu", "shed", 30.0, event.end, ""),
        ("ev", "shed", 5.0, event.end, ""),
    ]
    assert commands[0].payload()["event_id"] == event.pk
    kinds = [(e["kind"], e["previous_status"], e["status"]) for e in dr_events]
    assert kinds == [
        ("dispatch", "planned", "shed"),
        ("dispatch", "planned", "shed"),
        ("dispatch", "planned", "skipped"),
        ("event", "scheduled", "active"),
    ]
    # Never twice: another tick, or a direct call, finds nothing to start.
    assert services.events_tick(now=at) == {"activated": 0, "completed": 0, "missed": 0, "errors": 0}
    assert services.event_activate(event=event, now=at) is False
    assert DispatchCommand.objects.count() == 2


def test_a_shortfall_is_dispatched_as_far_as_it_goes_and_noted(plant: dict[str, FlexibleDevice]) -> None:
    power("ahu-power", 10, timezone.now() - timedelta(minutes=1))  # ev and lights: no reading
    event = soon(20)
    services.events_tick(now=event.start)
    event.refresh_from_db()
    assert event.note == "dispatched 10.000 of 20.000 kW"
    assert dispatch(event) == [
        ("ahu", "shed", 10.0, ""),
        ("ev", "skipped", None, "no reading"),
        ("lights", "skipped", None, "no reading"),
    ]


def test_completion_restores_the_shed_devices_once(
    loads: datetime, committed: Callable[..., Any], dr_events: list[dict[str, Any]]
) -> None:
    event = soon(12, devices=["ev", "lights"])
    services.events_tick(now=event.start)
    dr_events.clear()
    assert committed(services.events_tick, now=event.end) == {
        "activated": 0,
        "completed": 1,
        "missed": 0,
        "errors": 0,
    }
    event.refresh_from_db()
    assert (event.status, event.finished_at) == ("completed", event.end)
    assert [(n, s) for n, s, _, _ in dispatch(event)] == [("ev", "restored"), ("lights", "restored")]
    restores = DispatchCommand.objects.filter(action="restore").select_related("device")
    assert sorted((c.device.name, c.kw) for c in restores) == [("ev", 10.0), ("lights", 2.0)]
    assert [(e["kind"], e["status"]) for e in dr_events] == [
        ("dispatch", "restored"),
        ("dispatch", "restored"),
        ("event", "completed"),
    ]
    # Measured (no history here: not enough data, and said so).
    assert event.performance is not None
    assert event.performance["ok"] is False
    assert event.performance["reason"].startswith("not enough data")
    assert services.events_tick(now=event.end + timedelta(minutes=1)) == {
        "activated": 0,
        "completed": 0,
        "missed": 0,
        "errors": 0,
    }
    assert DispatchCommand.objects.count() == 4


def test_an_event_whose_window_passed_unseen_is_completed_without_dispatch(loads: datetime) -> None:
    event = soon(10)
    assert services.events_tick(now=event.end + timedelta(minutes=1))["missed"] == 1
    event.refresh_from_db()
    assert (event.status, event.note) == (
        "completed",
        "not dispatched: its window passed before the scheduler ran",
    )
    assert not DispatchCommand.objects.exists()


def test_cancel_a_scheduled_or_active_event_and_not_a_finished_one(loads: datetime) -> None:
    scheduled = soon(10, devices=["ahu"])
    services.event_cancel(event=scheduled, cancelled_by="operator:op", reason="tenant request")
    scheduled.refresh_from_db()
    assert (scheduled.status, scheduled.note) == ("cancelled", "cancelled by operator:op: tenant request")
    active = soon(10, devices=["ahu"])  # the cancelled event no longer holds the device
    services.events_tick(now=active.start)
    services.event_cancel(event=active, cancelled_by="operator:op")
    assert [(n, s) for n, s, _, _ in dispatch(active)] == [("ahu", "restored")]
    assert list(DispatchCommand.objects.order_by("pk").values_list("action", flat=True)) == [
        "shed",
        "restore",
    ]
    with pytest.raises(services.Conflict, match="is cancelled; only scheduled or active"):
        services.event_cancel(event=active, cancelled_by="operator:op")
    assert services.events_tick(now=active.end) == {"activated": 0, "completed": 0, "missed": 0, "errors": 0}


def z(moment: datetime) -> str:
    """ISO 8601 in UTC with a Z, as the signals write it."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def test_cancelling_an_active_event_sends_the_restore_and_the_cancellation(
    loads: datetime, committed: Callable[..., Any], dr_events: list[dict[str, Any]]
) -> None:
    event = soon(10, devices=["ev"])
    services.events_tick(now=event.start)
    row = event.dispatches.get()
    dr_events.clear()
    at = event.start + timedelta(minutes=10)
    committed(services.event_cancel, event=event, cancelled_by="operator:op", now=at)
    restore = DispatchCommand.objects.get(action="restore")
    assert dr_events == [
        {
            "kind": "dispatch",
            "id": row.pk,
            "status": "restored",
            "previous_status": "shed",
            "detail": {
                "event_id": event.pk,
                "command_id": restore.pk,
                "device": "ev",
                "action": "restore",
                "kw": 10.0,
                "until": z(event.end),
                "sent_at": z(at),
            },
        },
        {
            "kind": "event",
            "id": event.pk,
            "status": "cancelled",
            "previous_status": "active",
            "detail": {
                "target_kw": 10,
                "start": z(event.start),
                "end": z(event.end),
                "invitation_id": None,
                "dispatched_kw": 10.0,
                "measured_kw": None,
                "note": "cancelled by operator:op",
            },
        },
    ]


def test_cancel_of_a_scheduled_event_sends_its_dr_event(
    loads: datetime, committed: Callable[..., Any], dr_events: list[dict[str, Any]]
) -> None:
    event = soon(10, devices=["ahu"])
    dr_events.clear()
    committed(services.event_cancel, event=event, cancelled_by="operator:op", reason="storm")
    assert dr_events == [
        {
            "kind": "event",
            "id": event.pk,
            "status": "cancelled",
            "previous_status": "scheduled",
            "detail": {
                "target_kw": 10,
                "start": z(event.start),
                "end": z(event.end),
                "invitation_id": None,
                "dispatched_kw": None,
                "measured_kw": None,
                "note": "cancelled by operator:op: storm",
            },
        }
    ]


def test_a_missed_event_sends_its_completion(
    loads: datetime, committed: Callable[..., Any], dr_events: list[dict[str, Any]]
) -> None:
    event = soon(10, devices=["ahu"])
    dr_events.clear()
    committed(services.events_tick, now=event.end + timedelta(minutes=1))
    assert dr_events == [
        {
            "kind": "event",
            "id": event.pk,
            "status": "completed",
            "previous_status": "scheduled",
            "detail": {
                "target_kw": 10,
                "start": z(event.start),
                "end": z(event.end),
                "invitation_id": None,
                "dispatched_kw": None,
                "measured_kw": None,
                "note": "not dispatched: its window passed before the scheduler ran",
            },
        }
    ]
    # Measured after the commit, as a completed event is.
    event.refresh_from_db()
    assert event.performance is not None and event.performance["ok"] is False


def test_a_stale_copy_does_not_complete_or_cancel_an_event_twice(
    loads: datetime, committed: Callable[..., Any], dr_events: list[dict[str, Any]]
) -> None:
    event = soon(10, devices=["ahu"])
    services.events_tick(now=event.start)
    # Two workers loaded the active event; the first completes it.
    first, stale = DREvent.objects.get(pk=event.pk), DREvent.objects.get(pk=event.pk)
    dr_events.clear()
    assert committed(services.event_complete, event=first, now=event.end) is True
    assert committed(services.event_complete, event=stale, now=event.end) is False
    with pytest.raises(services.Conflict, match=f"Event {event.pk} is completed"):
        committed(services.event_cancel, event=stale, cancelled_by="operator:op", now=event.end)
    event.refresh_from_db()
    assert (event.status, event.note, event.finished_at) == ("completed", "", event.end)
    assert list(DispatchCommand.objects.order_by("pk").values_list("action", flat=True)) == [
        "shed",
        "restore",
    ]
    assert [(e["kind"], e["status"]) for e in dr_events] == [("dispatch", "restored"), ("event", "completed")]


def test_a_stale_copy_does_not_complete_an_event_cancelled_meanwhile(
    loads: datetime, committed: Callable[..., Any], dr_events: list[dict[str, Any]]
) -> None:
    event = soon(10, devices=["ahu"])
    services.events_tick(now=event.start)
    first, stale = DREvent.objects.get(pk=event.pk), DREvent.objects.get(pk=event.pk)
    dr_events.clear()
    committed(services.event_cancel, event=first, cancelled_by="operator:op", now=event.start)
    assert committed(services.event_complete, event=stale, now=event.end) is False
    event.refresh_from_db()
    assert (event.status, event.note) == ("cancelled", "cancelled by operator:op")
    assert event.performance is None  # the stale completion measured nothing either
    assert list(DispatchCommand.objects.order_by("pk").values_list("action", flat=True)) == [
        "shed",
        "restore",
    ]
    assert [(e["kind"], e["status"]) for e in dr_events] == [("dispatch", "restored"), ("event", "cancelled")]


def test_a_stale_copy_does_not_activate_a_cancelled_event(loads: datetime) -> None:
    event = soon(10, devices=["ahu"])
    first, stale = DREvent.objects.get(pk=event.pk), DREvent.objects.get(pk=event.pk)
    services.event_cancel(event=first, cancelled_by="operator:op")
    assert services.event_activate(event=stale, now=event.start) is False
    assert DREvent.objects.get(pk=event.pk).status == "cancelled"
    assert not DispatchCommand.objects.exists()


def test_back_to_back_events_on_a_device_restore_before_the_next_shed(
    plant: dict[str, FlexibleDevice], loads: datetime
) -> None:
    # The ahu runs in [T-30 min, T) and again in [T, T+30 min); the scheduler ticks at T.
    boundary = loads
    power("ahu-power", 40, boundary - timedelta(minutes=31))
    first = services.event_create(
        target_kw=10,
        start=boundary - timedelta(minutes=30),
        end=boundary,
        devices=["ahu"],
        now=boundary - timedelta(minutes=31),
    )
    second = services.event_create(
        target_kw=20, start=boundary, end=boundary + timedelta(minutes=30), devices=["ahu"], now=boundary
    )
    services.events_tick(now=first.start)
    assert services.events_tick(now=boundary) == {"activated": 1, "completed": 1, "missed": 0, "errors": 0}
    # A controller obeys the last command: the first event's restore must not follow the shed.
    commands = DispatchCommand.objects.order_by("sent_at", "pk")
    assert [(c.event_id, c.action, c.kw) for c in commands] == [
        (first.pk, "shed", 10.0),
        (first.pk, "restore", 10.0),
        (second.pk, "shed", 20.0),
    ]
    assert dispatch(second) == [("ahu", "shed", 20.0, "")]


def test_overlapping_events_on_a_named_device_are_refused(loads: datetime) -> None:
    first = soon(10, devices=["ahu", "ev"])
    with pytest.raises(
        services.Conflict,
        match=rf"^Overlapping events on the same device are refused: ev \(event {first.pk}\)\.$",
    ):
        services.event_create(
            target_kw=5,
            start=first.end - timedelta(minutes=1),
            end=first.end + timedelta(hours=1),
            devices=["ev"],
        )
    # Without named devices an event takes the free ones.
    second = services.event_create(target_kw=5, start=first.start, end=first.end + timedelta(hours=1))
    assert [r.device.name for r in second.dispatches.all()] == ["lights"]
    with pytest.raises(services.Conflict, match=r"No enabled device is free in that window\."):
        services.event_create(target_kw=5, start=first.start, end=first.end)
    # Back to back is allowed.
    services.event_create(
        target_kw=5, start=first.end, end=first.end + timedelta(minutes=15), devices=["ahu"]
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"target_kw": -1}, "target_kw: Ensure this value is greater than or equal to 0.001."),
        ({"end": -1}, "The event ends before it starts: end must be after start."),
        ({"devices": ["nope"]}, "Unknown devices: nope."),
        ({"past": True}, "The event would end in the past."),
    ],
)
def test_bad_events_are_refused(
    plant: dict[str, FlexibleDevice], changes: dict[str, Any], message: str
) -> None:
    start = timezone.now() + (timedelta(days=-2) if changes.get("past") else timedelta(hours=1))
    with pytest.raises(services.DRError, match=message.replace("(", r"\(")):
        services.event_create(
            target_kw=changes.get("target_kw", 5),
            start=start,
            end=start + timedelta(minutes=30 * changes.get("end", 1)),
            devices=changes.get("devices"),
        )


# --- Delivery measurement -------------------------------------------------------------------------

# Wednesday 18 June 2025, 14:00-15:00 in Lisbon (WEST, UTC+1): 13:00-14:00 UTC.
EVENT_START = datetime(2025, 6, 18, 13, tzinfo=UTC)
EVENT_END = EVENT_START + timedelta(hours=1)


def ran(target_kw: float, devices: list[str], start: datetime, end: datetime) -> DREvent:
    """An event run through the scheduler at its own times (in the past)."""
    event = services.event_create(target_kw=target_kw, start=start, end=end, devices=devices, now=start)
    services.event_activate(event=event, now=start)
    services.event_complete(event=event, now=end)
    event.refresh_from_db()
    return event


def test_delivery_is_measured_against_the_10_of_10_baseline(plant: dict[str, FlexibleDevice]) -> None:
    # 30 kW on the ahu, 20 kW on the ev, except 12 kW on the ahu during the event.
    history(
        ahu_kw=lambda m: 12.0 if EVENT_START <= m < EVENT_END else 30.0,
        ev_kw=20.0,
        until=EVENT_END + timedelta(hours=1),
    )
    event = ran(15, ["ahu", "ev"], EVENT_START, EVENT_END)
    report = event.performance
    assert report is not None
    assert report["ok"] is True, report
    # The ahu covered the target alone: only the devices shed are measured.
    assert report["sensors"] == ["ahu-power"]
    # Weekdays 17 June back to 4 June: ten of them.
    assert report["days_used"][0] == "2025-06-17"
    assert report["days_used"][-1] == "2025-06-04"
    assert report["adjustment"] == pytest.approx(1.0)
    assert [
        (i["start"], i["baseline_kw"], i["actual_kw"], i["delivered_kw"]) for i in report["intervals"]
    ] == [
        (f"2025-06-18T13:{m:02d}:00Z", pytest.approx(30.0), pytest.approx(12.0), pytest.approx(18.0))
        for m in (0, 15, 30, 45)
    ]
    assert report["energy_delivered_kwh"] == pytest.approx(18.0)
    assert report["share_of_commitment"] == pytest.approx(18 / 15)
    assert report["intervals_missing"] == 0
    assert event.measured_kw == pytest.approx(18.0)


def test_days_of_other_events_are_left_out_of_the_baseline(plant: dict[str, FlexibleDevice]) -> None:
    history(ahu_kw=lambda m: 30.0, ev_kw=20.0, until=EVENT_END)
    earlier = ran(5, ["ahu"], EVENT_START - timedelta(days=1), EVENT_END - timedelta(days=1))
    assert earlier.performance is not None
    assert "2025-06-17" not in earlier.performance["days_used"]
    event = ran(5, ["ahu"], EVENT_START, EVENT_END)
    assert event.performance is not None
    assert event.performance["excluded_days"] == ["2025-06-17"]
    assert "2025-06-17" not in event.performance["days_used"]
    assert event.performance["days_used"][-1] == "2025-06-03"
    # Only the shed ahu is measured; its load did not move, so nothing was delivered.
    assert event.performance["sensors"] == ["ahu-power"]
    assert event.performance["intervals_missing"] == 0
    assert event.measured_kw == pytest.approx(0.0)


def test_the_day_of_an_event_cancelled_after_it_started_is_left_out_of_the_baseline(
    plant: dict[str, FlexibleDevice],
) -> None:
    history(ahu_kw=lambda m: 30.0, ev_kw=20.0, until=EVENT_END)
    # Friday 13 June: scheduled, but no scheduler ran in its window: nothing was shed.
    missed_start = EVENT_START - timedelta(days=5)
    missed = services.event_create(
        target_kw=5,
        start=missed_start,
        end=missed_start + timedelta(hours=1),
        devices=["ev"],
        now=missed_start,
    )
    services.events_tick(now=missed.end + timedelta(minutes=1))
    # Monday 16 June: cancelled before it started: nothing was shed either.
    never_start = EVENT_START - timedelta(days=2)
    never = services.event_create(
        target_kw=5, start=never_start, end=never_start + timedelta(hours=1), devices=["ev"], now=never_start
    )
    services.event_cancel(event=never, cancelled_by="operator:op", now=never_start - timedelta(minutes=5))
    # Tuesday 17 June: started, shed the ahu, then cancelled half-way.
    earlier_start = EVENT_START - timedelta(days=1)
    earlier = services.event_create(
        target_kw=5,
        start=earlier_start,
        end=earlier_start + timedelta(hours=1),
        devices=["ahu"],
        now=earlier_start,
    )
    services.event_activate(event=earlier, now=earlier_start)
    services.event_cancel(
        event=earlier, cancelled_by="operator:op", now=earlier_start + timedelta(minutes=30)
    )
    event = ran(5, ["ahu"], EVENT_START, EVENT_END)
    report = event.performance
    assert report is not None and report["ok"] is True, report
    assert report["excluded_days"] == ["2025-06-17"]
    assert "2025-06-17" not in report["days_used"]
    assert {"2025-06-16", "2025-06-13"} <= set(report["days_used"])
    assert report["days_used"][-1] == "2025-06-03"


def test_high_4_of_5_is_used_when_the_programme_asks(plant: dict[str, FlexibleDevice]) -> None:
    history(ahu_kw=lambda m: 30.0, ev_kw=20.0, until=EVENT_END)
    event = services.event_create(
        target_kw=5,
        start=EVENT_START,
        end=EVENT_END,
        devices=["ahu"],
        baseline_method="high_4of5",
        now=EVENT_START,
    )
    services.event_activate(event=event, now=EVENT_START)
    services.event_complete(event=event, now=EVENT_END)
    event.refresh_from_db()
    assert event.performance is not None
    assert event.performance["method"] == "high_4of5"
    assert len(event.performance["days_used"]) == 4
    assert event.performance["adjustment_kind"] == "additive"
