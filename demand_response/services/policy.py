"""The auto-response policy: its rules, their evaluation for one invitation, and the periodic
run that expires overdue invitations and answers the pending ones by the policy
(docs/demand-response.md, "Auto-response")."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from demand_response.models import AutoResponsePolicy, FlexibleDevice, Invitation
from demand_response.services._common import (
    EPSILON_KW,
    DRError,
    describe,
    or_now,
    skipping,
    validated,
)
from demand_response.services.flexibility import flexibility_compute, plan_commitment
from demand_response.services.invitations import (
    invitation_accept,
    invitation_decline,
    invitations_expire,
)
from energy_dashboard.core.clock import building_tz
from sensors import services as sensors_services

logger = logging.getLogger(__name__)


def policy_get() -> AutoResponsePolicy:
    """The auto-response policy (created with its defaults, disabled, on first use)."""
    policy, _ = AutoResponsePolicy.objects.get_or_create(pk=1)
    return policy


def policy_update(*, updated_by: str, **changes: Any) -> AutoResponsePolicy:
    """Change the policy's rules; DRError names the fields past their bounds."""
    policy = policy_get()
    for name, value in changes.items():
        setattr(policy, name, value)
    validated(policy, exclude=["updated_at", "updated_by"])
    excluded = policy.excluded_devices
    unknown = set(excluded) - set(
        FlexibleDevice.objects.filter(name__in=excluded).values_list("name", flat=True)
    )
    if unknown:
        raise DRError.on(
            "excluded_devices", f"Unknown devices in excluded_devices: {', '.join(sorted(unknown))}."
        )
    policy.updated_by = updated_by
    policy.save()
    return policy


def _policy_candidates(policy: AutoResponsePolicy) -> list[FlexibleDevice]:
    return list(FlexibleDevice.objects.exclude(name__in=list(policy.excluded_devices)))


@dataclass(frozen=True)
class Decision:
    """The policy's answer to one invitation."""

    accept: bool
    reason: str
    plan: list[dict[str, Any]] = field(default_factory=list)


def policy_evaluate(
    *,
    policy: AutoResponsePolicy,
    invitation: Invitation,
    now: datetime,
    candidates: Sequence[FlexibleDevice] | None = None,
    latest: Mapping[str, tuple[datetime, float]] | None = None,
) -> Decision:
    """Apply the policy's rules in order; the first that fails is the decline's reason.

    `candidates` (the devices the policy may use) and `latest` (their power readings) may be
    given when many invitations are evaluated at once; which devices are busy is always
    read afresh, since each acceptance takes some.
    """
    tz = building_tz()
    local_start, local_end = invitation.start.astimezone(tz), invitation.end.astimezone(tz)
    notice = invitation.start - invitation.created_at
    minutes = invitation.duration.total_seconds() / 60
    day_names = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    if notice < timedelta(minutes=policy.min_notice_minutes):
        return Decision(
            False,
            f"notice of {int(notice.total_seconds() // 60)} min is below the policy's minimum "
            f"of {policy.min_notice_minutes} min",
        )
    # Each local day the event touches must be allowed, and its part of the event must lie in
    # that day's allowed hours: with 00-24 an event may run across midnight into another
    # allowed day; with 08-20 it may not.
    day = local_start.date()
    while True:
        if day.weekday() not in policy.allowed_days:
            return Decision(False, f"{day_names[day.weekday()]} is not an allowed day")
        midnight = datetime.combine(day, datetime.min.time(), tzinfo=tz)
        next_midnight = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=tz)
        window_start = midnight.replace(hour=policy.allowed_from_hour)
        window_end = (
            next_midnight
            if policy.allowed_until_hour == 24
            else midnight.replace(hour=policy.allowed_until_hour)
        )
        part_start, part_end = max(local_start, midnight), min(local_end, next_midnight)
        if part_start < window_start or part_end > window_end:
            return Decision(
                False,
                f"{local_start:%H:%M}-{local_end:%H:%M} is outside the allowed hours "
                f"{policy.allowed_from_hour:02d}:00-{policy.allowed_until_hour:02d}:00",
            )
        if local_end <= next_midnight:
            break
        day += timedelta(days=1)
    if minutes > policy.max_duration_minutes:
        return Decision(
            False,
            f"duration of {minutes:g} min exceeds the policy's maximum of {policy.max_duration_minutes} min",
        )
    if candidates is None:
        candidates = _policy_candidates(policy)
    flex = flexibility_compute(
        now=now, start=invitation.start, end=invitation.end, devices=candidates, latest=latest
    )
    allowed = flex.total_kw * policy.max_share
    if invitation.reduction_kw > allowed + EPSILON_KW:
        return Decision(
            False,
            f"needs {invitation.reduction_kw:g} kW; the policy may commit {allowed:.3f} kW "
            f"({policy.max_share:.0%} of {flex.total_kw:.3f} kW flexible)",
        )
    plan = plan_commitment(flex, invitation.reduction_kw)
    return Decision(True, f"covered by {len(plan)} device(s) within the policy", plan)


def auto_response_run(*, now: datetime | None = None) -> dict[str, int]:
    """Expire overdue invitations, then answer the pending ones by the policy (when enabled).

    Idempotent: each answer is a compare-and-swap, so a second run (or an operator answering
    at the same moment) never answers an invitation twice.
    """
    now = or_now(now)
    expiry = invitations_expire(now=now)
    done = {"expired": expiry["expired"], "accepted": 0, "declined": 0, "errors": expiry["errors"]}
    policy = policy_get()
    if not policy.enabled:
        return done
    if policy.out_of_bounds:
        # A rule past its bounds would decline (or accept) every invitation for a reason nobody
        # chose: answer nothing until the policy is corrected, and leave them to the operators.
        logger.warning(
            "auto-response policy not applied, pending invitations are left to operators: %s",
            describe(policy.out_of_bounds),
        )
        done["errors"] += 1
        return done
    pending = list(
        Invitation.objects.filter(status=Invitation.Status.PENDING, response_deadline__gte=now).order_by(
            "start", "pk"
        )
    )
    if not pending:
        return done
    # One read of the devices and their readings for the whole run (bench/dr.py: 50 invitations
    # x 1,000 devices re-read them 50 times).
    candidates = []
    for device in _policy_candidates(policy):
        if device.enabled and device.out_of_bounds:
            logger.warning(
                "device %s left out of the auto-response: %s", device.name, describe(device.out_of_bounds)
            )
            done["errors"] += 1
        else:
            candidates.append(device)
    latest = sensors_services.power_latest(sensor_ids=sorted({d.sensor_id for d in candidates}))
    for invitation in pending:
        if invitation.out_of_bounds:
            logger.warning(
                "invitation %s skipped by the auto-response, left to operators: %s",
                invitation.pk,
                describe(invitation.out_of_bounds),
            )
            done["errors"] += 1
            continue
        with skipping(done, f"invitation {invitation.pk}", "answering it by the policy"):
            _answer_by_policy(
                policy=policy, invitation=invitation, now=now, candidates=candidates, latest=latest, done=done
            )
    return done


def _answer_by_policy(
    *,
    policy: AutoResponsePolicy,
    invitation: Invitation,
    now: datetime,
    candidates: Sequence[FlexibleDevice],
    latest: Mapping[str, tuple[datetime, float]],
    done: dict[str, int],
) -> None:
    decision = policy_evaluate(
        policy=policy, invitation=invitation, now=now, candidates=candidates, latest=latest
    )
    try:
        if decision.accept:
            invitation_accept(
                invitation=invitation,
                answered_by="policy",
                reason=decision.reason,
                plan=decision.plan,
                now=now,
            )
            done["accepted"] += 1
        else:
            invitation_decline(invitation=invitation, answered_by="policy", reason=decision.reason, now=now)
            done["declined"] += 1
    except DRError as exc:
        # Answered by someone else meanwhile, or its devices were taken: next tick decides.
        logger.info("auto-response skipped invitation %s: %s", invitation.pk, exc)
