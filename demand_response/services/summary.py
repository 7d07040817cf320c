"""The module's reads for the platform: the overview's counts (`overview()`), and the lists the
demand-response page shows (`invitations_list`, `events_list`, `event_get`)."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Q

from demand_response.models import DREvent, FlexibleDevice, Invitation

# The most rows a list read returns: a page shows recent ones, never the whole history.
LIST_MAX = 200


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


def invitations_list(*, status: str | None = None, limit: int = 50) -> list[Invitation]:
    """Invitations, newest start first (with their event): all, or those with `status`; at most
    `limit` (capped at LIST_MAX)."""
    rows = Invitation.objects.select_related("event").order_by("-start", "-pk")
    if status is not None:
        rows = rows.filter(status=status)
    return list(rows[: max(0, min(limit, LIST_MAX))])


def events_list(*, limit: int = 50) -> list[DREvent]:
    """Events, newest start first, with each device's part; at most `limit` (capped at LIST_MAX)."""
    rows = DREvent.objects.prefetch_related("dispatches__device").order_by("-start", "-pk")
    return list(rows[: max(0, min(limit, LIST_MAX))])


def event_get(*, event_id: int) -> DREvent | None:
    """One event with each device's part, or None."""
    return DREvent.objects.prefetch_related("dispatches__device").filter(pk=event_id).first()
