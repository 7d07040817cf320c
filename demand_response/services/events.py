"""Events: schedule them (claiming their devices by the overlap rule), start and dispatch them,
complete or cancel them (restoring their devices), and the scheduler's tick that does each
transition once (docs/demand-response.md, "Dispatch rule").

The commands a dispatch sends are recorded and delivered by `demand_response/actuators.py`;
the state changes are announced here, through `_announce`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db import transaction

from demand_response import actuators
from demand_response.models import (
    OPEN_EVENT,
    BaselineMethod,
    DispatchCommand,
    DREvent,
    EventDevice,
    FlexibleDevice,
    Invitation,
)
from demand_response.services._announce import dispatch_commanded, dispatch_skipped, event_changed
from demand_response.services._common import (
    DB,
    EPSILON_KW,
    Conflict,
    DRError,
    or_now,
    skipping,
    validated,
)
from demand_response.services.devices import devices_named
from demand_response.services.flexibility import flexibility_compute
from demand_response.services.measurement import event_measure, programme_baseline

logger = logging.getLogger(__name__)


def event_create(
    *,
    target_kw: float,
    start: datetime,
    end: datetime,
    devices: Sequence[str] | None = None,
    name: str = "",
    programme: str = "",
    baseline_method: str | None = None,
    created_by: str = "",
    invitation: Invitation | None = None,
    planned_kw: dict[str, float] | None = None,
    now: datetime | None = None,
) -> DREvent:
    """Schedule an event; sends `dr_events` (scheduled).

    Overlap rule (`EventDevice.objects.overlapping`): a device is in at most one scheduled or
    active event at any instant. Named devices that are taken in [start, end) refuse the event
    (Conflict); with no devices named, the event takes every enabled device free in the window
    (Conflict when all are taken).
    """
    now = or_now(now)
    baseline_method = baseline_method or programme_baseline(programme)
    if baseline_method not in BaselineMethod.values:
        raise DRError.on("baseline_method", f"Unknown baseline method {baseline_method!r}.")
    event = DREvent(
        target_kw=target_kw,
        start=start,
        end=end,
        name=name,
        programme=programme,
        baseline_method=baseline_method,
        created_by=created_by,
        invitation=invitation,
    )
    validated(event, exclude=["invitation"])
    if end <= now:
        raise DRError.on("end", "The event would end in the past.")
    with transaction.atomic(using=DB):
        if devices:
            chosen = devices_named(devices)
            # Row locks (PostgreSQL) serialise two events claiming the same device; SQLite's
            # IMMEDIATE transactions already serialise writers.
            list(FlexibleDevice.objects.select_for_update().filter(pk__in=[d.pk for d in chosen]))
            busy = EventDevice.objects.overlapping(start, end).taken(d.pk for d in chosen)
            if busy:
                taken = ", ".join(f"{d.name} (event {busy[d.pk]})" for d in chosen if d.pk in busy)
                # A conflict with the current state (HTTP 409), not bad input: the same request
                # succeeds once the other event is cancelled.
                raise Conflict(f"Overlapping events on the same device are refused: {taken}.")
        else:
            enabled = list(FlexibleDevice.objects.select_for_update().filter(enabled=True))
            if not enabled:
                raise DRError("No device is enabled.")
            busy = EventDevice.objects.overlapping(start, end).taken(d.pk for d in enabled)
            chosen = [d for d in enabled if d.pk not in busy]
            if not chosen:
                raise Conflict("No enabled device is free in that window.")
        event.save()
        EventDevice.objects.bulk_create(
            EventDevice(event=event, device=d, planned_kw=(planned_kw or {}).get(d.name)) for d in chosen
        )
        event_changed(event, None)
    return event


def _transition(event: DREvent, old: str, new: str, **fields: Any) -> bool:
    """Compare-and-swap the event's status; False when it was not `old` any more."""
    changed = DREvent.objects.filter(pk=event.pk, status=old).update(status=new, **fields)
    if changed:
        # The caller's copy may be stale (loaded before another worker dispatched it): reload
        # so that dr_events and what follows see the stored row, not an old dispatched_kw.
        event.refresh_from_db()
    return bool(changed)


def _command(event: DREvent, row: EventDevice, action: str, kw: float, now: datetime) -> DispatchCommand:
    """Record the command that follows `row`'s change, and announce the change with it."""
    command = actuators.RecordingActuator().send(
        event=event, row=row, action=action, kw=kw, until=event.end, now=now
    )
    dispatch_commanded(row, command)
    return command


def event_activate(*, event: DREvent, now: datetime | None = None) -> bool:
    """Start a scheduled event and dispatch it: its devices in priority order, each shedding what
    it can now, until the target is covered. False if it was not scheduled any more.

    An event out of bounds (a row written around the validation) is refused with DRError and
    stays scheduled; a device out of bounds is skipped, its note says why.
    """
    return _activate(event, or_now(now)) is not None


def _activate(event: DREvent, now: datetime) -> list[str] | None:
    """event_activate's work: the devices skipped for settings out of bounds, None if the event
    was not scheduled any more."""
    if event.out_of_bounds:
        raise DRError.of(event.out_of_bounds, prefix="out of bounds: ")
    commands: list[DispatchCommand] = []
    note_length = EventDevice._meta.get_field("note").max_length
    with transaction.atomic(using=DB):
        if not _transition(event, DREvent.Status.SCHEDULED, DREvent.Status.ACTIVE, activated_at=now):
            return None
        rows = list(event.dispatches.select_related("device"))
        flex = flexibility_compute(now=now, devices=[r.device for r in rows], exclude_event=event.pk)
        by_name = {d.device: d for d in flex.devices}
        remaining = event.target_kw
        for row in sorted(rows, key=lambda r: (r.device.priority, r.device.name)):
            available = by_name[row.device.name]
            if remaining <= EPSILON_KW:
                row.status, row.note = EventDevice.Status.SKIPPED, "target already covered"
            elif available.flexible_kw <= 0:
                # Cut to the column: a reason quoting a huge stored number must not fail the save.
                reason = (available.reason or "no flexibility")[:note_length]
                row.status, row.note = EventDevice.Status.SKIPPED, reason
            else:
                kw = min(available.flexible_kw, remaining)
                remaining -= kw
                row.status, row.dispatched_kw, row.shed_at = EventDevice.Status.SHED, kw, now
                commands.append(_command(event, row, DispatchCommand.Action.SHED, kw, now))
            row.save(update_fields=["status", "note", "dispatched_kw", "shed_at"])
            if row.status == EventDevice.Status.SKIPPED:
                dispatch_skipped(row)
        dispatched = event.target_kw - max(remaining, 0.0)
        note = "" if remaining <= EPSILON_KW else f"dispatched {dispatched:.3f} of {event.target_kw:.3f} kW"
        DREvent.objects.filter(pk=event.pk).update(dispatched_kw=dispatched, note=note)
        event.dispatched_kw, event.note = dispatched, note
        event_changed(event, DREvent.Status.SCHEDULED)
    actuators.publish(commands)
    return [d.device for d in flex.devices if d.out_of_bounds]


def _restore(event: DREvent, now: datetime) -> list[DispatchCommand]:
    commands = []
    for row in event.dispatches.select_related("device").filter(status=EventDevice.Status.SHED):
        if EventDevice.objects.filter(pk=row.pk, status=EventDevice.Status.SHED).update(
            status=EventDevice.Status.RESTORED, restored_at=now
        ):
            row.status = EventDevice.Status.RESTORED
            commands.append(
                _command(event, row, DispatchCommand.Action.RESTORE, row.dispatched_kw or 0.0, now)
            )
    return commands


def event_complete(*, event: DREvent, now: datetime | None = None, measure: bool = True) -> bool:
    """End an active event: restore its devices, then measure what it delivered. False if it was
    not active any more."""
    now = or_now(now)
    with transaction.atomic(using=DB):
        if not _transition(event, DREvent.Status.ACTIVE, DREvent.Status.COMPLETED, finished_at=now):
            return False
        commands = _restore(event, now)
        event_changed(event, DREvent.Status.ACTIVE)
    actuators.publish(commands)
    if measure:
        event_measure(event=event)
    return True


def event_cancel(
    *, event: DREvent, cancelled_by: str, reason: str = "", now: datetime | None = None
) -> DREvent:
    """Cancel a scheduled or active event (an active one's devices are restored)."""
    now = or_now(now)
    note = f"cancelled by {cancelled_by}" + (f": {reason}" if reason else "")
    for old in OPEN_EVENT:
        with transaction.atomic(using=DB):
            if not _transition(event, old, DREvent.Status.CANCELLED, finished_at=now, note=note):
                continue
            commands = _restore(event, now) if old == DREvent.Status.ACTIVE else []
            event_changed(event, old)
        actuators.publish(commands)
        return event
    current = DREvent.objects.filter(pk=event.pk).values_list("status", flat=True).first()
    raise Conflict(f"Event {event.pk} is {current}; only scheduled or active events can be cancelled.")


def events_tick(*, now: datetime | None = None) -> dict[str, int]:
    """The scheduler's step: activate due events, complete ended ones (each transition once).

    An event whose whole window passed while nothing ran is completed without dispatch (its
    note says so) rather than started late.
    """
    now = or_now(now)
    done = {"activated": 0, "completed": 0, "missed": 0, "errors": 0}
    # Ended events first: with back-to-back events on a device, its restore must go out before
    # the next event's shed (a controller obeys the last command), and the next event's
    # activation must not find the device still held. Completing (restoring the devices) needs
    # none of the row's values, so an event out of bounds is completed too: only its
    # measurement is refused.
    for event in DREvent.objects.filter(status=DREvent.Status.ACTIVE, end__lte=now).order_by("end"):
        with skipping(done, f"event {event.pk}", "completing it"):
            if event_complete(event=event, now=now, measure=False):
                done["completed"] += 1
                _measure_counted(event, done)
    for event in DREvent.objects.filter(status=DREvent.Status.SCHEDULED, start__lte=now).order_by("start"):
        with skipping(done, f"event {event.pk}", "starting it"):
            if event.end <= now:
                if _miss(event, now):
                    done["missed"] += 1
                    _measure_counted(event, done)
                continue
            unusable = _activate(event, now)
            if unusable is not None:
                done["activated"] += 1
                for name in unusable:
                    logger.warning(
                        "device %s skipped in event %s: its settings are out of bounds", name, event.pk
                    )
                done["errors"] += len(unusable)
    return done


def _miss(event: DREvent, now: datetime) -> bool:
    """Complete a scheduled event whose window passed unseen, without dispatch."""
    with transaction.atomic(using=DB):
        note = "not dispatched: its window passed before the scheduler ran"
        if not _transition(
            event, DREvent.Status.SCHEDULED, DREvent.Status.COMPLETED, finished_at=now, note=note
        ):
            return False
        event_changed(event, DREvent.Status.SCHEDULED)
    return True


def _measure_counted(event: DREvent, done: dict[str, int]) -> None:
    # Measured once the completion committed: a measurement that fails must not undo it, nor
    # stop the scheduler, whatever it raised (it also runs the sensors module's rollups and
    # cache). It is named and counted; an operator can measure again (POST /events/{id}/measure).
    try:
        event_measure(event=event)
    except Exception as exc:
        logger.warning("event %s not measured: %s", event.pk, exc)
        done["errors"] += 1
