"""The `dr_events` announcements of the services' state changes: invitations, events, and the
devices an event's start skips (docs/demand-response.md, "dr_events", lists each kind and its
detail). Sent through `actuators.announce`, once the transaction commits.
"""

from __future__ import annotations

from typing import Any

from demand_response import actuators
from demand_response.models import DREvent, EventDevice, Invitation
from demand_response.services._common import iso_z


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
    actuators.announce("invitation", invitation, previous, _invitation_detail(invitation))


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
    actuators.announce("event", event, previous, _event_detail(event))


def dispatch_skipped(row: EventDevice) -> None:
    """A device was skipped at the event's start (planned -> skipped); its note says why."""
    detail = {"event_id": row.event_id, "device": row.device.name, "kw": row.dispatched_kw, "note": row.note}
    actuators.announce("dispatch", row, EventDevice.Status.PLANNED, detail)
