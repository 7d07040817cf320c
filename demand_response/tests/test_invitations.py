"""Invitations: validation, manual answers, expiry, and the auto-response policy."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from demand_response import services
from demand_response.models import DREvent, EventDevice, FlexibleDevice, Invitation
from demand_response.tests.helpers import permissive_policy

pytestmark = pytest.mark.django_db(databases="__all__")


def invite(kw: float = 35, *, in_hours: float = 3, hours: float = 1, **extra: Any) -> Invitation:
    start = timezone.now() + timedelta(hours=in_hours)
    return services.invitation_create(
        reduction_kw=kw,
        start=start,
        end=start + timedelta(hours=hours),
        response_deadline=start - timedelta(minutes=30),
        **extra,
    )


def z(moment: datetime) -> str:
    """ISO 8601 in UTC with a Z, as the signals and the API write it."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"end": "before"}, "end: The invitation ends before it starts: end must be after start."),
        ({"reduction_kw": -5}, "reduction_kw: Ensure this value is greater than or equal to 0.001."),
        ({"reduction_kw": 0}, "reduction_kw: Ensure this value is greater than or equal to 0.001."),
        (
            {"deadline": "after"},
            "response_deadline: The response deadline is after the start: it must be at or before the start.",
        ),
    ],
)
def test_bad_invitations_are_refused(changes: dict[str, Any], message: str) -> None:
    start = (timezone.now() + timedelta(days=30)).replace(minute=0, second=0, microsecond=0)
    args: dict[str, Any] = {
        "reduction_kw": changes.get("reduction_kw", 10),
        "start": start,
        "end": start - timedelta(minutes=1) if changes.get("end") == "before" else start + timedelta(hours=1),
        "response_deadline": start + timedelta(minutes=1) if changes.get("deadline") == "after" else start,
    }
    with pytest.raises(services.DRError, match="^" + message.replace("(", r"\(").replace(")", r"\)") + "$"):
        services.invitation_create(**args)
    assert not Invitation.objects.exists()


def test_a_known_external_id_returns_the_stored_invitation() -> None:
    first = invite(source="openadr", external_id="evt-1")
    again = invite(50, source="openadr", external_id="evt-1")
    assert again.pk == first.pk
    assert Invitation.objects.get().reduction_kw == 35
    assert invite(source="api", external_id="evt-1").pk != first.pk


def test_accept_commits_devices_in_priority_order_and_schedules_the_event(
    loads: datetime, committed: Callable[..., Any], dr_events: list[dict[str, Any]]
) -> None:
    invitation = committed(invite)
    committed(services.invitation_accept, invitation=invitation, answered_by="operator:op", reason="ok")
    invitation.refresh_from_db()
    assert invitation.status == "accepted"
    assert invitation.answered_by == "operator:op"
    assert invitation.answered_at is not None
    assert invitation.commitment == [{"device": "ahu", "kw": 30.0}, {"device": "ev", "kw": 5.0}]
    event = invitation.event
    assert (event.status, event.target_kw, event.start, event.end) == (
        "scheduled",
        35,
        invitation.start,
        invitation.end,
    )
    assert [(r.device.name, r.planned_kw) for r in event.dispatches.all()] == [("ahu", 30.0), ("ev", 5.0)]
    assert [(e["kind"], e["id"], e["previous_status"], e["status"]) for e in dr_events] == [
        ("invitation", invitation.pk, None, "pending"),
        ("invitation", invitation.pk, "pending", "accepted"),
        ("event", event.pk, None, "scheduled"),
    ]
    assert dr_events[1]["detail"]["committed_kw"] == 35


def test_accept_with_named_devices_and_a_partial_cover_says_so(loads: datetime) -> None:
    invitation = invite(20)
    services.invitation_accept(invitation=invitation, answered_by="operator:op", devices=["lights"])
    invitation.refresh_from_db()
    assert invitation.commitment == [{"device": "lights", "kw": 5.0}]
    assert invitation.reason == "accepted by operator op; covers 5.000 of 20.000 kW"


def test_accept_without_a_reason_records_who_accepted(loads: datetime) -> None:
    invitation = invite(10)
    services.invitation_accept(invitation=invitation, answered_by="operator:alice", reason="  ")
    assert Invitation.objects.get().reason == "accepted by operator alice"


def test_accept_is_refused_when_nothing_can_shed(plant: dict[str, FlexibleDevice]) -> None:
    invitation = invite(20)
    with pytest.raises(services.DRError, match=r"No device can shed load in that window \(.*ahu: no reading"):
        services.invitation_accept(invitation=invitation, answered_by="operator:op")
    assert Invitation.objects.get().status == "pending"
    assert not DREvent.objects.exists()


def test_an_invitation_is_answered_once(loads: datetime) -> None:
    invitation = invite()
    services.invitation_decline(invitation=invitation, answered_by="operator:op", reason="maintenance")
    with pytest.raises(services.Conflict, match="already declined"):
        services.invitation_accept(invitation=invitation, answered_by="operator:other")
    with pytest.raises(services.Conflict):
        services.invitation_decline(invitation=invitation.pk, answered_by="policy", reason="x")
    stored = Invitation.objects.get()
    assert (stored.status, stored.answered_by, stored.reason) == ("declined", "operator:op", "maintenance")


def test_decline_sends_dr_events_with_the_answer(
    loads: datetime, committed: Callable[..., Any], dr_events: list[dict[str, Any]]
) -> None:
    invitation = invite(12, source="openadr", external_id="evt-3", programme="flex-day")
    committed(services.invitation_decline, invitation=invitation, answered_by="operator:op", reason="busy")
    assert dr_events == [
        {
            "kind": "invitation",
            "id": invitation.pk,
            "status": "declined",
            "previous_status": "pending",
            "detail": {
                "reduction_kw": 12,
                "start": z(invitation.start),
                "end": z(invitation.end),
                "response_deadline": z(invitation.response_deadline),
                "programme": "flex-day",
                "source": "openadr",
                "external_id": "evt-3",
                "answered_by": "operator:op",
                "reason": "busy",
                "committed_kw": 0,
            },
        }
    ]


def test_decline_needs_a_reason(loads: datetime) -> None:
    with pytest.raises(services.DRError, match="Say why"):
        services.invitation_decline(invitation=invite(), answered_by="operator:op", reason=" ")


def test_past_the_deadline_an_invitation_expires_and_cannot_be_accepted(
    loads: datetime, committed: Callable[..., Any], dr_events: list[dict[str, Any]]
) -> None:
    invitation = invite()
    late = invitation.response_deadline + timedelta(seconds=1)
    with pytest.raises(services.Conflict, match="deadline"):
        services.invitation_accept(invitation=invitation, answered_by="operator:op", now=late)
    assert committed(services.invitations_expire, now=late) == {"expired": 1, "errors": 0}
    assert services.invitations_expire(now=late) == {"expired": 0, "errors": 0}
    stored = Invitation.objects.get()
    assert (stored.status, stored.answered_by, stored.reason) == (
        "expired",
        "system",
        "no answer before the deadline",
    )
    assert [(e["previous_status"], e["status"]) for e in dr_events] == [("pending", "expired")]


def test_unreported_answers_are_listed_until_marked(loads: datetime) -> None:
    invitation = invite(source="openadr", external_id="e-9")
    assert services.invitations_unreported(source="openadr") == []
    services.invitation_decline(invitation=invitation, answered_by="policy", reason="no")
    assert services.invitations_unreported(source="openadr") == [invitation]
    assert services.invitation_mark_reported(invitation=invitation) is True
    assert services.invitation_mark_reported(invitation=invitation) is False
    assert services.invitations_unreported(source="openadr") == []


# --- Auto-response ------------------------------------------------------------------------------


def answer(invitation: Invitation) -> tuple[str, str, str]:
    invitation.refresh_from_db()
    return invitation.status, invitation.answered_by, invitation.reason


def test_disabled_policy_leaves_invitations_for_operators(loads: datetime) -> None:
    invitation = invite()
    assert services.auto_response_run() == {"expired": 0, "accepted": 0, "declined": 0, "errors": 0}
    assert answer(invitation)[0] == "pending"


def test_policy_accepts_what_the_flexibility_covers(loads: datetime) -> None:
    permissive_policy(max_share=0.8)
    invitation = invite(36)  # 80 % of 45 kW
    assert services.auto_response_run() == {"expired": 0, "accepted": 1, "declined": 0, "errors": 0}
    assert answer(invitation) == ("accepted", "policy", "covered by 2 device(s) within the policy")
    assert invitation.commitment == [{"device": "ahu", "kw": 30.0}, {"device": "ev", "kw": 6.0}]
    assert DREvent.objects.get().invitation_id == invitation.pk
    # Run again: nothing is answered twice.
    assert services.auto_response_run() == {"expired": 0, "accepted": 0, "declined": 0, "errors": 0}


def test_policy_leaves_excluded_devices_out(loads: datetime) -> None:
    permissive_policy(excluded_devices=["ahu"])
    invitation = invite(12)
    services.auto_response_run()
    assert answer(invitation)[0] == "accepted"
    assert invitation.commitment == [{"device": "ev", "kw": 10.0}, {"device": "lights", "kw": 2.0}]
    assert not EventDevice.objects.filter(device__name="ahu").exists()


@pytest.mark.parametrize(
    ("rules", "kw", "hours", "reason"),
    [
        (
            {"max_share": 0.5},
            23,
            1,
            "needs 23 kW; the policy may commit 22.500 kW (50% of 45.000 kW flexible)",
        ),
        ({"max_duration_minutes": 30}, 10, 1, "duration of 60 min exceeds the policy's maximum of 30 min"),
        ({"min_notice_minutes": 600}, 10, 1, "notice of 179 min is below the policy's minimum of 600 min"),
    ],
)
def test_policy_declines_with_the_rule_that_failed(
    loads: datetime, rules: dict[str, Any], kw: float, hours: float, reason: str
) -> None:
    permissive_policy(**rules)
    invitation = invite(kw, hours=hours)
    assert services.auto_response_run()["declined"] == 1
    assert answer(invitation) == ("declined", "policy", reason)
    assert not DREvent.objects.exists()


def test_policy_declines_outside_allowed_days_and_hours(loads: datetime) -> None:
    # A fixed Saturday, 14:00-15:00 in Lisbon (summer time, UTC+1).
    start = datetime(2031, 6, 7, 13, tzinfo=UTC)
    now = start - timedelta(hours=3)
    saturday = Invitation.objects.create(
        reduction_kw=5, start=start, end=start + timedelta(hours=1), response_deadline=start
    )
    permissive_policy(allowed_days=[0, 1, 2, 3, 4])
    services.auto_response_run(now=now)
    assert answer(saturday) == ("declined", "policy", "Sat is not an allowed day")
    evening = Invitation.objects.create(
        reduction_kw=5, start=start, end=start + timedelta(hours=1), response_deadline=start
    )
    permissive_policy(allowed_from_hour=8, allowed_until_hour=14)
    services.auto_response_run(now=now)
    assert answer(evening) == ("declined", "policy", "14:00-15:00 is outside the allowed hours 08:00-14:00")


def test_an_operator_answering_while_the_policy_decides_wins_and_the_policy_answers_nothing(
    loads: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    permissive_policy()
    invitation = invite(10)
    evaluate = services.policy_evaluate

    def operator_meanwhile(**kwargs: Any) -> services.Decision:
        # The policy has listed the invitation as pending; the operator accepts before it answers.
        services.invitation_accept(invitation=invitation.pk, answered_by="operator:op", reason="mine")
        return evaluate(**kwargs)

    # Where the policy's run looks the evaluation up: its subject file.
    monkeypatch.setattr("demand_response.services.policy.policy_evaluate", operator_meanwhile)
    assert services.auto_response_run() == {"expired": 0, "accepted": 0, "declined": 0, "errors": 0}
    assert answer(invitation) == ("accepted", "operator:op", "mine")
    assert DREvent.objects.get().created_by == "operator:op"


def test_two_accepts_past_the_pending_check_give_one_answer_and_one_event(
    loads: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both read the invitation as pending before either wrote: the compare-and-swap decides.
    invitation = invite(10)
    stale = Invitation.objects.get(pk=invitation.pk)
    # The pending check of the invitations' subject file, as both answers ran it before either wrote.
    pending = "demand_response.services.invitations._pending"
    monkeypatch.setattr(pending, lambda _invitation: Invitation.objects.get(pk=stale.pk))
    decision = services.policy_evaluate(policy=services.policy_get(), invitation=stale, now=timezone.now())
    services.invitation_accept(invitation=invitation, answered_by="operator:op", reason="mine")
    monkeypatch.setattr(pending, lambda _invitation: stale)
    with pytest.raises(services.Conflict, match="was answered meanwhile"):
        services.invitation_accept(
            invitation=stale, answered_by="policy", reason="policy", plan=decision.plan
        )
    assert answer(invitation) == ("accepted", "operator:op", "mine")
    event = DREvent.objects.get()
    assert (event.created_by, event.dispatches.count()) == ("operator:op", 1)


def test_policy_run_expires_overdue_invitations_first(loads: datetime) -> None:
    permissive_policy()
    invitation = invite()
    result = services.auto_response_run(now=invitation.response_deadline + timedelta(minutes=1))
    assert result == {"expired": 1, "accepted": 0, "declined": 0, "errors": 0}
    assert answer(invitation)[0] == "expired"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"allowed_days": [7]}, "allowed_days: A non-empty list of weekdays"),
        ({"allowed_from_hour": 10, "allowed_until_hour": 10}, "allowed_until_hour: The allowed hours"),
        ({"max_share": 1.5}, "max_share: Must be in"),
        ({"excluded_devices": ["nope"]}, "Unknown devices in excluded_devices: nope."),
    ],
)
def test_bad_policies_are_refused(
    plant: dict[str, FlexibleDevice], changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(services.DRError, match=message.replace("(", r"\(")):
        services.policy_update(updated_by="test", **changes)


def test_the_baseline_method_follows_the_programme(settings: Any) -> None:
    settings.DR_PROGRAMME_BASELINES = {"pjm-elr": "high_4of5"}
    settings.DR_DEFAULT_BASELINE = "caiso_10of10"
    assert invite(programme="pjm-elr").baseline_method == "high_4of5"
    assert invite(programme="caiso-cbp").baseline_method == "caiso_10of10"
    # Named explicitly, the method stands whatever the programme.
    assert invite(programme="pjm-elr", baseline_method="caiso_10of10").baseline_method == "caiso_10of10"
    with pytest.raises(services.DRError, match="Unknown baseline method"):
        invite(baseline_method="average_of_all_days")


def test_an_event_across_midnight_is_allowed_when_both_days_and_their_hours_are(loads: datetime) -> None:
    from zoneinfo import ZoneInfo

    tz = ZoneInfo("Europe/Lisbon")
    local_now = timezone.now().astimezone(tz)
    start = local_now.replace(hour=23, minute=30, second=0, microsecond=0)
    if start - local_now < timedelta(hours=1):
        start += timedelta(days=1)
    invitation = Invitation.objects.create(
        reduction_kw=10, start=start, end=start + timedelta(hours=1), response_deadline=start
    )
    now = timezone.now()

    def decide() -> services.Decision:
        return services.policy_evaluate(policy=services.policy_get(), invitation=invitation, now=now)

    permissive_policy()  # every day, 00-24: 23:30-00:30 is inside
    assert decide().accept, decide().reason
    next_day = (start + timedelta(hours=1)).weekday()
    permissive_policy(allowed_days=[d for d in range(7) if d != next_day])
    names = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    assert decide().reason == f"{names[next_day]} is not an allowed day"
    permissive_policy(allowed_from_hour=8)  # the half hour after midnight is before 08:00
    assert decide().reason == "23:30-00:30 is outside the allowed hours 08:00-24:00"
