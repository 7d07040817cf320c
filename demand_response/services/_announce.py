"""The `dr_events` announcements: every state change of an invitation, an event or a device's
part in an event (docs/demand-response.md, "dr_events", lists each kind and its detail).

They are the services' because the services make the state changes; the actuators only record
and deliver the commands that follow from them (`demand_response/actuators.py`). One file for
every kind, so that the topic's payloads are read in one place. Each is sent once the
transaction that made the change commits.
"""

from __future__ import annotations

from typing import Any

from demand_response.models import DispatchCommand, DREvent, EventDevice, Invitation
from demand_response.services._common import DB, iso_z
from energy_dashboard.core import events


def announce(
    kind: str, row: Invitation | DREvent | EventDevice, previous: str | None, detail: dict[str, Any]
) -> None:
    """Send `dr_events` for one state change of `row` once the transaction commits; every
    announcement of the module goes through here."""
    events.send_on_commit(
        events.dr_events,
        sender=type(row),
        using=DB,
        kind=kind,
        id=row.pk,
        status=row.status,
        previous_status=previous,
        detail=detail,
    )


def _invitation_detail(invitation: Invitation) -> dict[str, Any]:
    return {
        "reduction_kw": invitation.reduction_kw,
        "start": iso_z(invitation.start),
        "end": iso_z(invitation.end),
        "response_deadline": iso_z(invitation.response_deadline),
        "programme": invitation.programme,
        "source": invitation.source,
        "external_id": invitation.external_id,
        "answered_by": invitation.answered_by,
        "reason": invitation.reason,
        "committed_kw": invitation.committed_kw,
    }


def invitation_changed(invitation: Invitation, previous: str | None) -> None:
    """An invitation was recorded (`previous` None) or answered."""
    announce("invitation", invitation, previous, _invitation_detail(invitation))


def _event_detail(event: DREvent) -> dict[str, Any]:
    return {
        "target_kw": event.target_kw,
        "start": iso_z(event.start),
        "end": iso_z(event.end),
        "invitation_id": event.invitation_id,
        "dispatched_kw": event.dispatched_kw,
        "measured_kw": event.measured_kw,
        "note": event.note,
    }


def event_changed(event: DREvent, previous: str | None) -> None:
    """An event was scheduled (`previous` None), started, completed or cancelled."""
    announce("event", event, previous, _event_detail(event))


def dispatch_commanded(row: EventDevice, command: DispatchCommand) -> None:
    """A device was shed or restored: `row` changed by the recorded `command`."""
    shed = command.action == DispatchCommand.Action.SHED
    previous = EventDevice.Status.PLANNED if shed else EventDevice.Status.SHED
    detail = {"event_id": command.event_id, "command_id": command.pk, **command.payload()}
    announce("dispatch", row, previous, detail)


def dispatch_skipped(row: EventDevice) -> None:
    """A device was skipped at the event's start (planned -> skipped); its note says why."""
    detail = {"event_id": row.event_id, "device": row.device.name, "kw": row.dispatched_kw, "note": row.note}
    announce("dispatch", row, EventDevice.Status.PLANNED, detail)
