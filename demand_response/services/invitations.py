"""Invitations from the grid: record them, answer them (an acceptance commits devices and
schedules the event), expire those past their deadline, and tell the OpenADR VEN which answers
it has yet to relay."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction

from demand_response.models import BaselineMethod, Invitation, utc
from demand_response.services._announce import invitation_changed
from demand_response.services._common import (
    DB,
    EPSILON_KW,
    Conflict,
    DRError,
    iso_z,
    or_now,
    skipping,
    validated,
)
from demand_response.services.devices import devices_named
from demand_response.services.events import event_create
from demand_response.services.flexibility import flexibility_compute, plan_commitment
from demand_response.services.measurement import programme_baseline


def invitation_create(
    *,
    reduction_kw: float,
    start: datetime,
    response_deadline: datetime,
    end: datetime | None = None,
    duration: timedelta | None = None,
    programme: str = "",
    baseline_method: str | None = None,
    source: str = "api",
    external_id: str | None = None,
) -> Invitation:
    """Record an invitation from the grid (end, or duration, given); sends `dr_events` (pending).

    With an `external_id` already known for that `source` (a VTN sending the same event
    again), the stored invitation is returned unchanged, whatever the copy says. Otherwise the
    invitation must lie within the bounds (docs/demand-response.md, "Bounds"): DRError names
    the fields that do not.
    """
    if external_id is not None:
        existing = Invitation.objects.filter(source=source, external_id=external_id).first()
        if existing is not None:
            return existing
    if end is None:
        if duration is None:
            raise DRError.on("end", "Give the invitation's end or its duration.")
        try:
            end = utc(start) + duration
        except OverflowError as exc:  # past year 9999: not a date, so bad input, not a crash
            raise DRError.on("end", "The invitation's duration is too long.") from exc
    baseline_method = baseline_method or programme_baseline(programme)
    if baseline_method not in BaselineMethod.values:
        raise DRError.on("baseline_method", f"Unknown baseline method {baseline_method!r}.")
    invitation = Invitation(
        reduction_kw=reduction_kw,
        start=start,
        end=end,
        response_deadline=response_deadline,
        programme=programme,
        baseline_method=baseline_method,
        source=source,
        external_id=external_id,
    )
    validated(invitation)
    with transaction.atomic(using=DB):
        if external_id is not None:
            # Recorded meanwhile (the unique constraint would refuse a second row).
            existing = Invitation.objects.filter(source=source, external_id=external_id).first()
            if existing is not None:
                return existing
        invitation.save()
        invitation_changed(invitation, None)
    return invitation


def _pending(invitation: Invitation | int) -> Invitation:
    pk = invitation if isinstance(invitation, int) else invitation.pk
    found = Invitation.objects.filter(pk=pk).first()
    if found is None:
        raise DRError(f"No invitation {pk}.")
    if found.status != Invitation.Status.PENDING:
        raise Conflict(f"Invitation {pk} is already {found.status}.")
    return found


def _answer(
    invitation: Invitation,
    *,
    status: str,
    answered_by: str,
    reason: str,
    now: datetime,
    commitment: list[Any],
) -> Invitation:
    """Compare-and-swap pending -> status; raises Conflict when another answer came first."""
    changed = Invitation.objects.filter(pk=invitation.pk, status=Invitation.Status.PENDING).update(
        status=status, answered_by=answered_by, answered_at=now, reason=reason, commitment=commitment
    )
    if not changed:
        raise Conflict(f"Invitation {invitation.pk} was answered meanwhile.")
    invitation.status, invitation.answered_by, invitation.answered_at = status, answered_by, now
    invitation.reason, invitation.commitment = reason, commitment
    invitation_changed(invitation, Invitation.Status.PENDING)
    return invitation


def invitation_accept(
    *,
    invitation: Invitation | int,
    answered_by: str,
    reason: str = "",
    devices: Sequence[str] | None = None,
    now: datetime | None = None,
    plan: list[dict[str, Any]] | None = None,
) -> Invitation:
    """Accept a pending invitation before its deadline: commit devices (the named ones, or every
    enabled free device) in priority order and create its event. Sends `dr_events` for both.

    Refused when no device has flexibility in the window; a partial cover is accepted, and
    the reason says how much is covered. With no reason given, the reason names who accepted
    ("accepted by operator alice"): every answer is recorded with one. `plan` (used by the
    policy) skips the computation.
    """
    now = or_now(now)
    if not reason.strip():
        reason = f"accepted by {answered_by.replace(':', ' ', 1)}"
    found = _pending(invitation)
    if now > found.response_deadline:
        raise Conflict(
            f"The response deadline of invitation {found.pk} passed at {iso_z(found.response_deadline)}."
        )
    if plan is None:
        chosen = devices_named(devices) if devices else None
        flex = flexibility_compute(now=now, start=found.start, end=found.end, devices=chosen)
        plan = plan_commitment(flex, found.reduction_kw)
        if not plan:
            why = "; ".join(f"{d.device}: {d.reason}" for d in flex.devices) or "no devices"
            raise DRError(f"No device can shed load in that window ({why}).")
    covered = math.fsum(item["kw"] for item in plan)
    if covered + EPSILON_KW < found.reduction_kw:
        reason = f"{reason}; covers {covered:.3f} of {found.reduction_kw:.3f} kW"
    with transaction.atomic(using=DB):
        _answer(
            found,
            status=Invitation.Status.ACCEPTED,
            answered_by=answered_by,
            reason=reason,
            now=now,
            commitment=plan,
        )
        event_create(
            target_kw=found.reduction_kw,
            start=found.start,
            end=found.end,
            devices=[item["device"] for item in plan],
            planned_kw={item["device"]: item["kw"] for item in plan},
            programme=found.programme,
            baseline_method=found.baseline_method,
            name=f"invitation {found.pk}",
            created_by=answered_by,
            invitation=found,
            now=now,
        )
    return found


def invitation_decline(
    *, invitation: Invitation | int, answered_by: str, reason: str, now: datetime | None = None
) -> Invitation:
    """Decline a pending invitation with a stated reason; sends `dr_events`."""
    if not reason.strip():
        raise DRError("Say why the invitation is declined.")
    found = _pending(invitation)
    with transaction.atomic(using=DB):
        return _answer(
            found,
            status=Invitation.Status.DECLINED,
            answered_by=answered_by,
            reason=reason,
            now=or_now(now),
            commitment=[],
        )


def invitations_expire(*, now: datetime | None = None) -> dict[str, int]:
    """Expire pending invitations past their deadline (compare-and-swap each): how many were
    expired, and how many could not be ("errors", each named in a warning)."""
    now = or_now(now)
    done = {"expired": 0, "errors": 0}
    for invitation in Invitation.objects.filter(status=Invitation.Status.PENDING, response_deadline__lt=now):
        # Expiring computes nothing with the row's values, so even a row out of bounds expires.
        with skipping(done, f"invitation {invitation.pk}", "expiring"), transaction.atomic(using=DB):
            try:
                _answer(
                    invitation,
                    status=Invitation.Status.EXPIRED,
                    answered_by="system",
                    reason="no answer before the deadline",
                    now=now,
                    commitment=[],
                )
            except Conflict:
                continue
            done["expired"] += 1
    return done


def invitations_unreported(*, source: str) -> list[Invitation]:
    """Answered invitations of `source` whose answer was not yet relayed (for the OpenADR VEN)."""
    return list(
        Invitation.objects.filter(source=source, reported_at__isnull=True).exclude(
            status=Invitation.Status.PENDING
        )
    )


def invitation_mark_reported(*, invitation: Invitation, now: datetime | None = None) -> bool:
    """Record that the answer was relayed to the sender; False if it already was."""
    return bool(
        Invitation.objects.filter(pk=invitation.pk, reported_at__isnull=True).update(reported_at=or_now(now))
    )
