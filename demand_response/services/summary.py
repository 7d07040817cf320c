"""The module's counts for the platform overview (`overview()`)."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Q

from demand_response.models import DREvent, FlexibleDevice, Invitation


def overview() -> dict[str, Any]:
    """Counts for the platform overview."""
    invitations = dict(Invitation.objects.values_list("status").annotate(n=Count("id")).order_by())
    dr_events = dict(DREvent.objects.values_list("status").annotate(n=Count("id")).order_by())
    devices = FlexibleDevice.objects.aggregate(total=Count("id"), enabled=Count("id", filter=Q(enabled=True)))
    return {
        "devices": devices["total"],
        "devices_enabled": devices["enabled"],
        "invitations_pending": invitations.get(Invitation.Status.PENDING, 0),
        "invitations_by_status": invitations,
        "events_scheduled": dr_events.get(DREvent.Status.SCHEDULED, 0),
        "events_active": dr_events.get(DREvent.Status.ACTIVE, 0),
        "events_by_status": dr_events,
    }
