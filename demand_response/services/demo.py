"""The demo building's demand response, made by the module's own services: flexible devices on
the demo's loads, an event the building took part in (an invitation accepted, dispatched and
completed by the scheduler's tick, then measured against its baseline), and an invitation
waiting for an answer.

The event is replayed in the past: the demo's history is written up to its start, the
scheduler dispatches it from the load it then finds, the devices' metered load during the
event is written less what they were told to shed, and the scheduler completes and measures
it. The readings come from the sensors module's demo (`sensors.services.demo_history`).
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from django.db.models import Q

from demand_response.models import OPEN_EVENT, DREvent, EventDevice, FlexibleDevice, Invitation
from demand_response.services._common import DRError, or_now
from demand_response.services.devices import device_create
from demand_response.services.events import events_tick
from demand_response.services.flexibility import flexibility_compute
from demand_response.services.invitations import invitation_accept, invitation_create
from demand_response.services.policy import policy_get
from energy_dashboard.core.clock import building_tz
from sensors import services as sensors_services

# Invitations the demo makes come from this source (the grid's would be "api" or "openadr").
DEMO_SOURCE = "demo"
DEMO_PROGRAMME = "demo-capacity"
# (name, sensor, category, max kW, max share, priority): the rooms' HVAC and lighting, metered
# by the rooms' power sensors (sensors/services/demo.py); the server room is never shed.
DEMO_DEVICES: list[tuple[str, str, str, float, float, int]] = [
    ("lobby-hvac", "lobby-power", FlexibleDevice.Category.HVAC, 1.5, 0.4, 10),
    ("meeting-201-hvac", "meeting-201-power", FlexibleDevice.Category.HVAC, 1.0, 0.5, 20),
    ("office-101-lighting", "office-101-power", FlexibleDevice.Category.LIGHTING, 0.5, 0.3, 30),
    ("office-102-lighting", "office-102-power", FlexibleDevice.Category.LIGHTING, 0.5, 0.3, 30),
]
# The completed event: 14:00-16:00 local on the last weekday before today, 2 kW asked.
EVENT_HOURS = (14, 16)
EVENT_KW = 2.0
EVENT_KEY = "demo-event-"  # its invitation's external_id, with the event's local date
# The pending invitation: 15:00-17:00 local on the next weekday, answer due 2 hours before.
INVITATION_HOURS = (15, 17)
INVITATION_MAX_KW = 1.5
# The next event, accepted already: 10:00-11:00 local on the next weekday.
SCHEDULED_HOURS = (10, 11)


def _local(day: datetime, hour: int) -> datetime:
    return datetime.combine(day.date(), time(hour), tzinfo=building_tz()).astimezone(UTC)


def _weekday(now: datetime, step: int) -> datetime:
    """The nearest weekday before (step -1) or after (step 1) `now`'s local date, at midnight."""
    day = now.astimezone(building_tz())
    while True:
        day += timedelta(days=step)
        if day.weekday() < 5:
            return day


def event_window(now: datetime) -> tuple[datetime, datetime]:
    """The completed demo event's window: on the last weekday before `now`'s local date."""
    day = _weekday(now, -1)
    return _local(day, EVENT_HOURS[0]), _local(day, EVENT_HOURS[1])


def invitation_window(now: datetime, hours: tuple[int, int] = INVITATION_HOURS) -> tuple[datetime, datetime]:
    """A demo invitation's window (the pending one's by default): on the next weekday after
    `now`'s local date."""
    day = _weekday(now, 1)
    return _local(day, hours[0]), _local(day, hours[1])


def demo_load(*, now: datetime | None = None) -> dict[str, int]:
    """Give the demo building its demand response (idempotent): the devices, one completed and
    measured event, the next event (accepted, scheduled), one pending invitation. Needs the
    sensors module's demo building."""
    now = or_now(now)
    devices = _devices()
    event, readings = _completed_event(now)
    scheduled = _scheduled_event(now)
    pending = _pending_invitation(now)
    return {
        "devices": devices,
        "completed_event": event.pk if event is not None else 0,
        "scheduled_event": scheduled.pk if scheduled is not None else 0,
        "pending_invitation": pending.pk if pending is not None else 0,
        "readings": readings,
    }


def _devices() -> int:
    known = sensors_services.sensors_known(sensor_ids=[sensor_id for _, sensor_id, *_ in DEMO_DEVICES])
    existing = set(FlexibleDevice.objects.values_list("name", flat=True))
    for name, sensor_id, category, max_kw, share, priority in DEMO_DEVICES:
        if name in existing or sensor_id not in known:
            continue  # kept as an operator left it; or its sensor was deleted
        device_create(
            name=name,
            sensor_id=sensor_id,
            category=category,
            max_shed_kw=max_kw,
            max_shed_share=share,
            priority=priority,
        )
    return FlexibleDevice.objects.filter(name__in=[d[0] for d in DEMO_DEVICES]).count()


def _completed_event(now: datetime) -> tuple[DREvent | None, int]:
    """The demo's one past event, replayed once (a later run finds it and changes nothing), and
    how many readings the replay wrote."""
    existing = DREvent.objects.filter(
        invitation__source=DEMO_SOURCE, invitation__external_id__startswith=EVENT_KEY
    ).first()
    if existing is not None:
        return existing, 0
    start, end = event_window(now)
    if not FlexibleDevice.objects.filter(enabled=True).exists():
        return None, 0
    # The building's history up to the event: what the acceptance and the dispatch look at.
    readings = sensors_services.demo_history(now=now, until=start)["readings"]
    invitation = invitation_create(
        reduction_kw=EVENT_KW,
        start=start,
        end=end,
        response_deadline=start - timedelta(hours=2),
        programme=DEMO_PROGRAMME,
        source=DEMO_SOURCE,
        external_id=f"{EVENT_KEY}{start.astimezone(building_tz()):%Y%m%d}",
    )
    invitation_accept(invitation=invitation, answered_by="operator:operator", now=start - timedelta(hours=3))
    events_tick(now=start)
    event = DREvent.objects.get(invitation=invitation)
    # The devices obey: their metered load during the event is less what each was told to shed.
    shed_w = {
        row.device.sensor_id: (row.dispatched_kw or 0.0) * 1000.0
        for row in event.dispatches.select_related("device").filter(status=EventDevice.Status.SHED)
    }
    readings += sensors_services.demo_history(now=now, until=end, shed_w=shed_w)["readings"]
    # The rest of the history, then the scheduler's tick at the end: restore, complete, measure.
    readings += sensors_services.demo_history(now=now)["readings"]
    events_tick(now=end)
    event.refresh_from_db()
    return event, readings


def _ask_kw(now: datetime, start: datetime, end: datetime) -> float:
    """Half of what the policy may commit over [start, end) now, so that its check passes: at
    night the loads (and so what they can shed) are small, and an ask the building cannot meet
    would only be declined."""
    flexible_kw = flexibility_compute(now=now, start=start, end=end).total_kw
    return max(round(min(INVITATION_MAX_KW, flexible_kw * policy_get().max_share / 2), 2), 0.01)


def _scheduled_event(now: datetime) -> DREvent | None:
    """The next event: an invitation for the next weekday, accepted by an operator now, so
    the scheduler dispatches it when it starts (kept while it is open; another once it ended)."""
    waiting = DREvent.objects.filter(invitation__source=DEMO_SOURCE, status__in=OPEN_EVENT).first()
    if waiting is not None:
        return waiting
    start, end = invitation_window(now, SCHEDULED_HOURS)
    invitation = invitation_create(
        reduction_kw=_ask_kw(now, start, end),
        start=start,
        end=end,
        response_deadline=start - timedelta(hours=2),
        programme=DEMO_PROGRAMME,
        source=DEMO_SOURCE,
        external_id=f"demo-scheduled-{start.astimezone(building_tz()):%Y%m%d}",
    )
    if invitation.status == Invitation.Status.PENDING:
        try:
            invitation_accept(invitation=invitation, answered_by="operator:operator", now=now)
        except DRError:
            return None  # no device can shed now (all disabled, say): it stays an invitation
    return DREvent.objects.filter(invitation=invitation).first()


def _pending_invitation(now: datetime) -> Invitation | None:
    """An invitation waiting for the operators, sized to what the policy could commit now (the
    auto-response accepts it when enabled; it is off by default, so it waits)."""
    waiting = Invitation.objects.filter(
        Q(source=DEMO_SOURCE, status=Invitation.Status.PENDING, response_deadline__gt=now)
    ).first()
    if waiting is not None:
        return waiting
    start, end = invitation_window(now)
    reduction_kw = _ask_kw(now, start, end)
    return invitation_create(
        reduction_kw=reduction_kw,
        start=start,
        end=end,
        response_deadline=start - timedelta(hours=2),
        programme=DEMO_PROGRAMME,
        source=DEMO_SOURCE,
        external_id=f"demo-invitation-{start.astimezone(building_tz()):%Y%m%d}",
    )
