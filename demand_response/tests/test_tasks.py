"""The periodic jobs against rows they cannot handle: each such row is skipped, named in a
warning and counted in the job's result as "errors"; the other rows are handled and the job
returns normally.

The bad rows are written straight to the database (QuerySet.update bypasses validation), as a
row stored before the bounds existed, or by hand, would be. What the database itself refuses
(SQLite stores NaN as NULL, which a NOT NULL column refuses; PostgreSQL's integer column holds
no 2^62) cannot be such a row there, and the tests assert that instead.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import DatabaseError, connections, transaction
from django.db.models import Model
from django.utils import timezone
from rest_framework.test import APIClient

from demand_response import services, tasks
from demand_response.models import AutoResponsePolicy, DispatchCommand, DREvent, FlexibleDevice, Invitation
from demand_response.tests.helpers import permissive_policy
from sensors import services as sensors_services

pytestmark = pytest.mark.django_db(databases="__all__")
DB = "demand_response"
FAR = datetime(9999, 12, 31, 22, tzinfo=UTC)


def store(model: type[Model], pk: int, **values: Any) -> bool:
    """Write `values` over the row's fields without validation; False if the database refused."""
    try:
        with transaction.atomic(using=DB):
            model._default_manager.filter(pk=pk).update(**values)
    except DatabaseError:
        return False
    return True


def vendor() -> str:
    return connections[DB].vendor


def warned(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return any(r.levelname == "WARNING" and text in r.getMessage() for r in caplog.records)


def invite(kw: float = 10, *, in_hours: float = 3) -> Invitation:
    start = timezone.now() + timedelta(hours=in_hours)
    return services.invitation_create(
        reduction_kw=kw,
        start=start,
        end=start + timedelta(hours=1),
        response_deadline=start - timedelta(hours=1),
    )


def overdue() -> Invitation:
    start = timezone.now() - timedelta(hours=1)
    return services.invitation_create(
        reduction_kw=5,
        start=start,
        end=start + timedelta(hours=1),
        response_deadline=start - timedelta(hours=1),
    )


# --- auto_response_tick ------------------------------------------------------------------------------

BAD_INVITATIONS = [
    # Once: OverflowError past year 9999 in the policy's day walk, every 30 s, for every invitation.
    pytest.param({"start": FAR, "end": FAR + timedelta(hours=1)}, id="start-9999"),
    pytest.param({"reduction_kw": math.inf}, id="reduction-inf"),
    pytest.param({"reduction_kw": 5e6}, id="reduction-beyond-max"),
    # NaN compares false with everything: the policy took it as covered and accepted it.
    pytest.param({"reduction_kw": math.nan}, id="reduction-nan"),
    pytest.param({"end": "start+30d"}, id="thirty-days"),
    pytest.param({"baseline_method": "bogus"}, id="unknown-baseline"),
]


@pytest.mark.parametrize("values", BAD_INVITATIONS)
def test_auto_response_skips_and_reports_an_invitation_it_cannot_handle(
    loads: datetime, caplog: pytest.LogCaptureFixture, values: dict[str, Any]
) -> None:
    permissive_policy()
    good, bad = invite(10), invite(10)
    if values.get("end") == "start+30d":
        values = {"end": bad.start + timedelta(days=30)}
    if not store(Invitation, bad.pk, **values):
        # SQLite keeps NaN as NULL: a NOT NULL column cannot hold this row at all.
        assert (vendor(), math.isnan(values.get("reduction_kw", 0.0))) == ("sqlite", True)
        return
    result = tasks.auto_response_tick()
    assert result == {"expired": 0, "accepted": 1, "declined": 0, "errors": 1}
    assert Invitation.objects.get(pk=good.pk).status == "accepted"
    assert Invitation.objects.get(pk=bad.pk).status == "pending"  # left to the operators
    assert warned(caplog, f"invitation {bad.pk}")


BAD_POLICIES = [
    pytest.param({"allowed_days": "weekdays"}, id="days-not-a-list"),
    # No allowed day declined every invitation; the API now refuses it (disable the policy).
    pytest.param({"allowed_days": []}, id="no-allowed-day"),
    pytest.param({"allowed_days": [0, 9]}, id="day-9"),
    pytest.param({"excluded_devices": 5}, id="excluded-not-a-list"),
    # Once: OverflowError in timedelta(minutes=...) on SQLite, which holds it.
    pytest.param({"min_notice_minutes": 2**62}, id="notice-2^62"),
    pytest.param({"min_notice_minutes": 2**31 - 1}, id="notice-beyond-max"),
    pytest.param({"max_duration_minutes": 10**6}, id="duration-beyond-max"),
]


@pytest.mark.parametrize("values", BAD_POLICIES)
def test_auto_response_skips_a_policy_it_cannot_apply_and_still_expires(
    loads: datetime, caplog: pytest.LogCaptureFixture, values: dict[str, Any]
) -> None:
    permissive_policy()
    pending, late = invite(10), overdue()
    if not store(AutoResponsePolicy, 1, **values):
        # PostgreSQL's integer column holds at most 2^31 - 1.
        assert (vendor(), values) == ("postgresql", {"min_notice_minutes": 2**62})
        return
    result = tasks.auto_response_tick()
    assert result == {"expired": 1, "accepted": 0, "declined": 0, "errors": 1}
    assert Invitation.objects.get(pk=late.pk).status == "expired"
    assert Invitation.objects.get(pk=pending.pk).status == "pending"
    assert warned(caplog, "auto-response policy")


@pytest.mark.parametrize(
    "values",
    [
        pytest.param({"max_shed_kw": math.inf}, id="kw-inf"),
        pytest.param({"max_shed_kw": 1e300}, id="kw-1e300"),
    ],
)
def test_auto_response_leaves_out_a_device_it_cannot_compute_with(
    loads: datetime,
    plant: dict[str, FlexibleDevice],
    caplog: pytest.LogCaptureFixture,
    values: dict[str, Any],
) -> None:
    permissive_policy()
    assert store(FlexibleDevice, plant["ahu"].pk, **values)
    invitation = invite(12)  # ev 10 + lights 2 without the ahu
    result = tasks.auto_response_tick()
    assert result == {"expired": 0, "accepted": 1, "declined": 0, "errors": 1}
    invitation.refresh_from_db()
    assert invitation.commitment == [{"device": "ev", "kw": 10.0}, {"device": "lights", "kw": 2.0}]
    assert warned(caplog, "device ahu")


def test_a_device_whose_sensor_is_gone_is_no_flexibility_not_an_error(
    loads: datetime, plant: dict[str, FlexibleDevice]
) -> None:
    permissive_policy()
    gone = sensors_services.sensor_register(sensor_id="ahu-power", kind="power")
    sensors_services.sensor_delete(sensor=gone)
    invitation = invite(12)
    assert tasks.auto_response_tick() == {"expired": 0, "accepted": 1, "declined": 0, "errors": 0}
    invitation.refresh_from_db()
    assert [c["device"] for c in invitation.commitment] == ["ev", "lights"]


# --- invitations_expire -------------------------------------------------------------------------------


def test_expiry_answers_rows_the_policy_could_not_and_counts_errors() -> None:
    far, inf = overdue(), overdue()
    assert store(Invitation, far.pk, start=FAR, end=FAR + timedelta(hours=1))
    assert store(Invitation, inf.pk, reduction_kw=math.inf)
    # Expiry computes nothing with the row's values: it is always safe to expire one.
    assert services.invitations_expire() == {"expired": 2, "errors": 0}
    assert set(Invitation.objects.values_list("status", flat=True)) == {"expired"}


# --- scheduler_tick -----------------------------------------------------------------------------------


def due(target_kw: float, devices: list[str], minutes: int = 30) -> DREvent:
    """An event whose start has just come (scheduler_tick runs at the real now)."""
    start = timezone.now() - timedelta(seconds=30)
    return services.event_create(
        target_kw=target_kw, start=start, end=start + timedelta(minutes=minutes), devices=devices
    )


BAD_EVENTS = [
    # An infinite target shed every device it had, and stored NaN as what it dispatched.
    pytest.param({"target_kw": math.inf}, id="target-inf"),
    pytest.param({"target_kw": math.nan}, id="target-nan"),
    pytest.param({"target_kw": 5e6}, id="target-beyond-max"),
    pytest.param({"end": FAR}, id="end-9999"),
    pytest.param({"baseline_method": "bogus"}, id="unknown-baseline"),
]


@pytest.mark.parametrize("values", BAD_EVENTS)
def test_the_scheduler_skips_and_reports_an_event_it_cannot_dispatch(
    loads: datetime, caplog: pytest.LogCaptureFixture, values: dict[str, Any]
) -> None:
    good, bad = due(5, ["lights"]), due(5, ["ahu"])
    if not store(DREvent, bad.pk, **values):
        assert (vendor(), math.isnan(values.get("target_kw", 0.0))) == ("sqlite", True)
        return
    result = tasks.scheduler_tick()
    assert result == {"activated": 1, "completed": 0, "missed": 0, "errors": 1}
    assert DREvent.objects.get(pk=good.pk).status == "active"
    assert DREvent.objects.get(pk=bad.pk).status == "scheduled"
    assert not DispatchCommand.objects.filter(event=bad).exists()
    assert warned(caplog, f"event {bad.pk}")


@pytest.mark.parametrize(
    "values",
    [
        pytest.param({"max_shed_kw": math.inf}, id="kw-inf"),
        pytest.param({"max_shed_kw": math.nan}, id="kw-nan"),
        pytest.param({"max_shed_kw": 1e300}, id="kw-1e300"),
    ],
)
def test_the_scheduler_skips_a_device_it_cannot_compute_with(
    loads: datetime,
    plant: dict[str, FlexibleDevice],
    caplog: pytest.LogCaptureFixture,
    values: dict[str, Any],
) -> None:
    event = due(50, ["ahu", "lights"])
    if not store(FlexibleDevice, plant["ahu"].pk, **values):
        # SQLite keeps NaN as NULL, and the ahu has no other limit (dr_device_has_a_limit).
        assert (vendor(), math.isnan(values["max_shed_kw"])) == ("sqlite", True)
        return
    result = tasks.scheduler_tick()
    assert result == {"activated": 1, "completed": 0, "missed": 0, "errors": 1}
    rows = {r.device.name: (r.status, r.dispatched_kw) for r in event.dispatches.select_related("device")}
    # Without its limit the ahu would have shed its whole 40 kW.
    assert rows == {"ahu": ("skipped", None), "lights": ("shed", 5.0)}
    assert event.dispatches.get(device__name="ahu").note.startswith("settings out of bounds: max_shed_kw")
    assert warned(caplog, "device ahu")


def test_the_scheduler_completes_an_event_it_cannot_measure_and_reports_it(
    loads: datetime, caplog: pytest.LogCaptureFixture
) -> None:
    good, bad = due(5, ["lights"]), due(5, ["ahu"])
    services.events_tick()
    assert store(DREvent, bad.pk, start=datetime(1, 1, 1, tzinfo=UTC))
    missed = services.event_create(
        target_kw=5,
        start=timezone.now() + timedelta(minutes=1),
        end=timezone.now() + timedelta(minutes=2),
        devices=["ev"],
    )
    assert store(DREvent, missed.pk, baseline_method="bogus")
    result = services.events_tick(now=good.end + timedelta(minutes=1))
    assert result == {"activated": 0, "completed": 2, "missed": 1, "errors": 2}
    # Restoring the devices never waits for a measurement: the shed ahu got its restore.
    assert set(DREvent.objects.values_list("status", flat=True)) == {"completed"}
    assert list(DispatchCommand.objects.filter(event=bad).values_list("action", flat=True)) == [
        "shed",
        "restore",
    ]
    assert DREvent.objects.get(pk=good.pk).performance is not None
    assert DREvent.objects.get(pk=bad.pk).performance is None
    assert warned(caplog, f"event {bad.pk}") and warned(caplog, f"event {missed.pk}")


def test_measuring_an_event_it_cannot_compute_with_is_a_400(loads: datetime, operator_api: APIClient) -> None:
    event = due(5, ["lights"])
    services.events_tick()
    services.events_tick(now=event.end)
    # Once a 500: OverflowError going back a lookback before year 1.
    assert store(DREvent, event.pk, start=datetime(1, 1, 1, tzinfo=UTC))
    response = operator_api.post(f"/api/v1/demand-response/events/{event.pk}/measure")
    assert response.status_code == 400, response.content
    assert "start" in response.json()["errors"]


def test_the_scheduler_handles_a_device_whose_sensor_is_gone(
    loads: datetime, caplog: pytest.LogCaptureFixture
) -> None:
    event = due(50, ["ahu", "lights"])
    sensors_services.sensor_delete(
        sensor=sensors_services.sensor_register(sensor_id="ahu-power", kind="power")
    )
    assert tasks.scheduler_tick() == {"activated": 1, "completed": 0, "missed": 0, "errors": 0}
    rows = {r.device.name: (r.status, r.note) for r in event.dispatches.select_related("device")}
    assert rows == {"ahu": ("skipped", "no reading"), "lights": ("shed", "")}
    result = services.events_tick(now=event.end)
    assert result == {"activated": 0, "completed": 1, "missed": 0, "errors": 0}
    event.refresh_from_db()
    assert event.performance is not None and event.performance["ok"] is False
