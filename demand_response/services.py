"""The public face of the demand-response module: every write, and the reads others share.

State changes are compare-and-swap updates (`filter(pk=..., status=old).update(status=new)`):
a transition happens once however many schedulers, workers or operators race for it, and each
one sends `dr_events` after its transaction commits. See docs/demand-response.md.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import DatabaseError, transaction
from django.db.models import Count, Model, ProtectedError, Q
from django.utils import timezone

from demand_response import actuators, baselines
from demand_response.models import (
    AutoResponsePolicy,
    BaselineMethod,
    DispatchCommand,
    DREvent,
    EventDevice,
    FlexibleDevice,
    Invitation,
    utc,
)
from sensors import services as sensors_services

logger = logging.getLogger(__name__)

DB = "demand_response"
QUARTER = timedelta(minutes=15)
# Events whose devices are taken: a device is in at most one of these at any instant.
OPEN_EVENT = (DREvent.Status.SCHEDULED, DREvent.Status.ACTIVE)
# Below this a remaining target counts as covered (float sums of kW).
EPSILON_KW = 1e-6


class DRError(Exception):
    """A request the module refuses; the message says why, for people, and `errors` which
    fields are at fault (field -> messages; empty when no one field is)."""

    code = "invalid"

    def __init__(self, message: str, errors: Mapping[str, Sequence[str]] | None = None) -> None:
        super().__init__(message)
        self.errors: dict[str, list[str]] = {name: list(texts) for name, texts in (errors or {}).items()}

    @classmethod
    def on(cls, name: str, message: str) -> DRError:
        """A refusal of one field's value."""
        return cls(message, {name: [message]})

    @classmethod
    def of(cls, errors: Mapping[str, Sequence[str]], prefix: str = "") -> DRError:
        """A refusal of several fields' values (a model's validation errors)."""
        errors = {("non_field_errors" if k == NON_FIELD_ERRORS else k): v for k, v in errors.items()}
        return cls(prefix + _describe(errors), errors)


def _describe(errors: Mapping[str, Sequence[str]]) -> str:
    """Field errors as one line: "start: ...; end: ..."."""
    return "; ".join(f"{name}: {' '.join(texts)}" for name, texts in errors.items())


def _validated(row: Model, *, exclude: Iterable[str] = ()) -> None:
    """Refuse a row about to be saved whose fields break the model's bounds and rules (the same
    validators and clean() the admin's forms run), naming the fields. The database's unique and
    check constraints stay the last word; the services check uniqueness themselves."""
    try:
        row.full_clean(exclude=list(exclude), validate_unique=False, validate_constraints=False)
    except ValidationError as exc:
        raise DRError.of(exc.message_dict) from exc


# What a row the periodic jobs cannot handle raises: its values (an overflow, a type, a value
# the database refuses) or a refusal of the services. Anything else (a lost connection to the
# broker, Celery's soft time limit) still stops the job, as it should.
_ROW_ERRORS = (ArithmeticError, LookupError, TypeError, ValueError, DatabaseError, ValidationError, DRError)


@contextmanager
def _skipping(done: dict[str, int], row: str, doing: str) -> Iterator[None]:
    """One row's step of a periodic job: a row it cannot handle is named in a warning, counted in
    done["errors"] and skipped, so that it never stops the job for the other rows."""
    try:
        yield
    except _ROW_ERRORS as exc:
        logger.warning("%s skipped while %s: %s", row, doing, exc)
        done["errors"] += 1


class Conflict(DRError):
    """The object is no longer in the state the request needs (already answered, finished...)."""

    code = "conflict"


def _now(now: datetime | None) -> datetime:
    return now if now is not None else timezone.now()


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _tz() -> ZoneInfo:
    return ZoneInfo(settings.TIME_ZONE)


# --- Devices ---------------------------------------------------------------------------------


def device_check_references(
    *, sensor_id: str, room: str = "", unchanged_from: FlexibleDevice | None = None
) -> str:
    """Check a device's sensor and room against the sensors module; returns its room.

    A device in no room takes its sensor's room. A sensor or room equal to `unchanged_from`'s
    (the stored device being changed) is not checked again: a device whose sensor was deleted
    since can still be disabled or edited. Raises DRError naming the field. Public so that
    forms (the admin) refuse before saving, with the same message the API gives.
    """
    keeps_sensor = unchanged_from is not None and sensor_id == unchanged_from.sensor_id
    keeps_room = unchanged_from is not None and room == unchanged_from.room
    known = sensors_services.sensors_known(sensor_ids=[sensor_id])
    if sensor_id not in known and not keeps_sensor:
        raise DRError.on(
            "sensor_id", f"Unknown sensor {sensor_id!r}: register it in the sensors module first."
        )
    sensor_room = (known[sensor_id]["room"] or "") if sensor_id in known else ""
    if room and not keeps_room and room not in sensors_services.room_names():
        raise DRError.on("room", f"Unknown room {room!r}.")
    return room or sensor_room


def device_create(
    *,
    name: str,
    sensor_id: str,
    room: str = "",
    category: str = FlexibleDevice.Category.OTHER,
    max_shed_kw: float | None = None,
    max_shed_share: float | None = None,
    priority: int = 100,
    min_event_minutes: int = 0,
    max_event_minutes: int | None = None,
    enabled: bool = True,
) -> FlexibleDevice:
    """Register a flexible device; its sensor must exist in the sensors module."""
    if FlexibleDevice.objects.filter(name=name).exists():
        raise DRError.on("name", f"A device named {name!r} exists already.")
    device = FlexibleDevice(
        name=name,
        sensor_id=sensor_id,
        room=room,
        category=category,
        max_shed_kw=max_shed_kw,
        max_shed_share=max_shed_share,
        priority=priority,
        min_event_minutes=min_event_minutes,
        max_event_minutes=max_event_minutes,
        enabled=enabled,
    )
    _validated(device)
    device.room = device_check_references(sensor_id=sensor_id, room=room)
    device.save()
    return device


def device_update(*, device: FlexibleDevice, **changes: Any) -> FlexibleDevice:
    """Change a device's fields (its name is its key and stays)."""
    if "name" in changes and changes["name"] != device.name:
        raise DRError.on("name", "name is the device's key and cannot change.")
    stored = FlexibleDevice(sensor_id=device.sensor_id, room=device.room)
    for name, value in changes.items():
        setattr(device, name, value)
    _validated(device)
    device.room = device_check_references(sensor_id=device.sensor_id, room=device.room, unchanged_from=stored)
    device.save()
    return device


def device_delete(*, device: FlexibleDevice) -> None:
    """Delete a device that no event refers to (otherwise disable it)."""
    try:
        device.delete()
    except ProtectedError as exc:
        raise DRError(f"Device {device.name!r} took part in events; disable it instead.") from exc


# --- Flexibility ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceFlexibility:
    """What one device can shed, and why nothing when nothing."""

    device: str
    sensor_id: str
    category: str
    priority: int
    current_kw: float | None
    reading_at: datetime | None
    flexible_kw: float
    reason: str | None  # None when flexible_kw > 0
    # Its stored settings are out of bounds (a row written around the validation): no
    # flexibility, and the jobs report it.
    out_of_bounds: bool = False


@dataclass(frozen=True)
class Flexibility:
    """The flexibility of a set of devices now, or over a window."""

    at: datetime
    start: datetime | None
    end: datetime | None
    devices: list[DeviceFlexibility]

    @property
    def total_kw(self) -> float:
        """The building's total: the sum over the devices."""
        return math.fsum(d.flexible_kw for d in self.devices)

    def as_dict(self) -> dict[str, Any]:
        """The API's shape."""
        return {
            "at": _iso(self.at),
            "start": _iso(self.start),
            "end": _iso(self.end),
            "total_kw": round(self.total_kw, 3),
            "devices": [
                {
                    "device": d.device,
                    "sensor_id": d.sensor_id,
                    "category": d.category,
                    "priority": d.priority,
                    "current_kw": None if d.current_kw is None else round(d.current_kw, 3),
                    "reading_at": _iso(d.reading_at),
                    "flexible_kw": round(d.flexible_kw, 3),
                    "reason": d.reason,
                }
                for d in self.devices
            ],
        }


def _shed_limit(device: FlexibleDevice, current_kw: float) -> float:
    limits = [current_kw]
    if device.max_shed_kw is not None:
        limits.append(device.max_shed_kw)
    if device.max_shed_share is not None:
        limits.append(device.max_shed_share * current_kw)
    return max(min(limits), 0.0)


def _busy_devices(
    device_pks: Iterable[int], start: datetime, end: datetime, exclude_event: int | None = None
) -> dict[int, int]:
    """Devices in an open event overlapping [start, end): device pk -> that event's id."""
    rows = EventDevice.objects.filter(
        device_id__in=list(device_pks),
        event__status__in=OPEN_EVENT,
        event__start__lt=end,
        event__end__gt=start,
    )
    if exclude_event is not None:
        rows = rows.exclude(event_id=exclude_event)
    return dict(rows.values_list("device_id", "event_id"))


def _busy_devices_now(
    device_pks: Iterable[int], now: datetime, exclude_event: int | None = None
) -> dict[int, int]:
    """Devices held by an event at `now`: device pk -> that event's id.

    An active event holds its devices until the scheduler completes it (they stay shed past
    its end until then); a scheduled one whose start has come holds them too (the next tick
    sheds them).
    """
    rows = EventDevice.objects.filter(device_id__in=list(device_pks), event__start__lte=now).filter(
        Q(event__status=DREvent.Status.ACTIVE) | Q(event__status=DREvent.Status.SCHEDULED, event__end__gt=now)
    )
    if exclude_event is not None:
        rows = rows.exclude(event_id=exclude_event)
    return dict(rows.values_list("device_id", "event_id"))


def flexibility_compute(
    *,
    now: datetime | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    devices: Sequence[FlexibleDevice] | None = None,
    exclude_event: int | None = None,
    latest: Mapping[str, tuple[datetime, float]] | None = None,
) -> Flexibility:
    """The kW each device can shed now (or over [start, end)) and why zero when zero.

    Now: from the device's latest power reading and its limits; a reading older than
    DR_READING_MAX_AGE, or none, is no flexibility, and neither is a device an event holds now
    (it may be shedding already). A window: the latest reading stands for the window (no
    forecast), the window's length must fit the device's minimum and maximum event length, and
    a device taken by another open event in the window has none. `exclude_event` is the event
    asking (its own devices are not taken from it).
    """
    now = _now(now)
    chosen = list(devices) if devices is not None else list(FlexibleDevice.objects.all())
    if latest is None:  # callers answering many invitations at once read the readings once
        latest = sensors_services.power_latest(sensor_ids=sorted({d.sensor_id for d in chosen}))
    max_age = timedelta(seconds=settings.DR_READING_MAX_AGE)
    minutes: float | None = None
    if start is not None and end is not None:
        busy = _busy_devices((d.pk for d in chosen), start, end, exclude_event)
        minutes = (utc(end) - utc(start)).total_seconds() / 60
    else:
        busy = _busy_devices_now((d.pk for d in chosen), now, exclude_event)
    out: list[DeviceFlexibility] = []
    for device in sorted(chosen, key=lambda d: (d.priority, d.name)):
        reading = latest.get(device.sensor_id)
        current_kw = None if reading is None else reading[1] / 1000.0
        reason = _unavailable(device, reading, now=now, max_age=max_age, minutes=minutes, busy=busy)
        kw = 0.0
        if reason is None:
            assert current_kw is not None
            kw = _shed_limit(device, current_kw)
            if kw <= 0:
                reason = f"no load to shed ({current_kw:.3f} kW)"
        out.append(
            DeviceFlexibility(
                device=device.name,
                sensor_id=device.sensor_id,
                category=device.category,
                priority=device.priority,
                current_kw=current_kw,
                reading_at=None if reading is None else reading[0],
                flexible_kw=kw,
                reason=reason,
                out_of_bounds=bool(device.enabled and device.out_of_bounds),
            )
        )
    return Flexibility(at=now, start=start, end=end, devices=out)


def _unavailable(  # noqa: PLR0911 (one return per reason, in the order they are reported)
    device: FlexibleDevice,
    reading: tuple[datetime, float] | None,
    *,
    now: datetime,
    max_age: timedelta,
    minutes: float | None,
    busy: Mapping[int, int],
) -> str | None:
    """Why the device has no flexibility whatever its load, or None."""
    if not device.enabled:
        return "disabled"
    if device.out_of_bounds:
        return f"settings out of bounds: {_describe(device.out_of_bounds)}"
    if reading is None:
        return "no reading"
    if now - reading[0] > max_age:
        return f"reading {int((now - reading[0]).total_seconds() // 60)} min old"
    if minutes is not None and minutes < device.min_event_minutes:
        return f"the window is shorter than the device's minimum of {device.min_event_minutes} min"
    if minutes is not None and device.max_event_minutes is not None and minutes > device.max_event_minutes:
        return f"the window is longer than the device's maximum of {device.max_event_minutes} min"
    if device.pk in busy:
        return f"committed to event {busy[device.pk]}"
    return None


def _plan(flexibility: Flexibility, target_kw: float) -> list[dict[str, Any]]:
    """Devices in priority order, each taking what it can, until the target is covered."""
    plan: list[dict[str, Any]] = []
    remaining = target_kw
    for device in flexibility.devices:
        if remaining <= EPSILON_KW:
            break
        if device.flexible_kw <= 0:
            continue
        kw = min(device.flexible_kw, remaining)
        plan.append({"device": device.device, "kw": round(kw, 6)})
        remaining -= kw
    return plan


# --- Invitations -------------------------------------------------------------------------------


def _invitation_detail(invitation: Invitation) -> dict[str, Any]:
    return {
        "reduction_kw": invitation.reduction_kw,
        "start": _iso(invitation.start),
        "end": _iso(invitation.end),
        "response_deadline": _iso(invitation.response_deadline),
        "programme": invitation.programme,
        "source": invitation.source,
        "external_id": invitation.external_id,
        "answered_by": invitation.answered_by,
        "reason": invitation.reason,
        "committed_kw": invitation.committed_kw,
    }


def _invitation_event(invitation: Invitation, previous: str | None) -> None:
    actuators.announce("invitation", invitation, previous, _invitation_detail(invitation))


def programme_baseline(programme: str) -> str:
    """The baseline method of a programme: DR_PROGRAMME_BASELINES names it per programme
    (the utility's rules differ: CAISO programmes use 10 of 10, PJM's High 4 of 5), else
    DR_DEFAULT_BASELINE."""
    return settings.DR_PROGRAMME_BASELINES.get(programme, settings.DR_DEFAULT_BASELINE)


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
    _validated(invitation)
    with transaction.atomic(using=DB):
        if external_id is not None:
            # Recorded meanwhile (the unique constraint would refuse a second row).
            existing = Invitation.objects.filter(source=source, external_id=external_id).first()
            if existing is not None:
                return existing
        invitation.save()
        _invitation_event(invitation, None)
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
    _invitation_event(invitation, Invitation.Status.PENDING)
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
    now = _now(now)
    if not reason.strip():
        reason = f"accepted by {answered_by.replace(':', ' ', 1)}"
    found = _pending(invitation)
    if now > found.response_deadline:
        raise Conflict(
            f"The response deadline of invitation {found.pk} passed at {_iso(found.response_deadline)}."
        )
    if plan is None:
        chosen = _devices_named(devices) if devices else None
        flex = flexibility_compute(now=now, start=found.start, end=found.end, devices=chosen)
        plan = _plan(flex, found.reduction_kw)
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
            now=_now(now),
            commitment=[],
        )


def invitations_expire(*, now: datetime | None = None) -> dict[str, int]:
    """Expire pending invitations past their deadline (compare-and-swap each): how many were
    expired, and how many could not be ("errors", each named in a warning)."""
    now = _now(now)
    done = {"expired": 0, "errors": 0}
    for invitation in Invitation.objects.filter(status=Invitation.Status.PENDING, response_deadline__lt=now):
        # Expiring computes nothing with the row's values, so even a row out of bounds expires.
        with _skipping(done, f"invitation {invitation.pk}", "expiring"), transaction.atomic(using=DB):
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
        Invitation.objects.filter(pk=invitation.pk, reported_at__isnull=True).update(reported_at=_now(now))
    )


# --- Auto-response ---------------------------------------------------------------------------


def policy_get() -> AutoResponsePolicy:
    """The auto-response policy (created with its defaults, disabled, on first use)."""
    policy, _ = AutoResponsePolicy.objects.get_or_create(pk=1)
    return policy


def policy_update(*, updated_by: str, **changes: Any) -> AutoResponsePolicy:
    """Change the policy's rules; DRError names the fields past their bounds."""
    policy = policy_get()
    for name, value in changes.items():
        setattr(policy, name, value)
    _validated(policy, exclude=["updated_at", "updated_by"])
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
    tz = _tz()
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
    plan = _plan(flex, invitation.reduction_kw)
    return Decision(True, f"covered by {len(plan)} device(s) within the policy", plan)


def auto_response_run(*, now: datetime | None = None) -> dict[str, int]:
    """Expire overdue invitations, then answer the pending ones by the policy (when enabled).

    Idempotent: each answer is a compare-and-swap, so a second run (or an operator answering
    at the same moment) never answers an invitation twice.
    """
    now = _now(now)
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
            _describe(policy.out_of_bounds),
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
                "device %s left out of the auto-response: %s", device.name, _describe(device.out_of_bounds)
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
                _describe(invitation.out_of_bounds),
            )
            done["errors"] += 1
            continue
        with _skipping(done, f"invitation {invitation.pk}", "answering it by the policy"):
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


# --- Events ----------------------------------------------------------------------------------


def _event_detail(event: DREvent) -> dict[str, Any]:
    return {
        "target_kw": event.target_kw,
        "start": _iso(event.start),
        "end": _iso(event.end),
        "invitation_id": event.invitation_id,
        "dispatched_kw": event.dispatched_kw,
        "measured_kw": event.measured_kw,
        "note": event.note,
    }


def _event_changed(event: DREvent, previous: str | None) -> None:
    actuators.announce("event", event, previous, _event_detail(event))


def _devices_named(names: Sequence[str]) -> list[FlexibleDevice]:
    found = {d.name: d for d in FlexibleDevice.objects.filter(name__in=list(names))}
    unknown = [n for n in names if n not in found]
    if unknown:
        raise DRError(f"Unknown devices: {', '.join(unknown)}.")
    return [found[n] for n in dict.fromkeys(names)]


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

    Overlap rule: a device is in at most one scheduled or active event at any instant. Named
    devices that are taken in [start, end) refuse the event (Conflict); with no devices named,
    the event takes every enabled device free in the window (Conflict when all are taken).
    """
    now = _now(now)
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
    _validated(event, exclude=["invitation"])
    if end <= now:
        raise DRError.on("end", "The event would end in the past.")
    with transaction.atomic(using=DB):
        if devices:
            chosen = _devices_named(devices)
            # Row locks (PostgreSQL) serialise two events claiming the same device; SQLite's
            # IMMEDIATE transactions already serialise writers.
            list(FlexibleDevice.objects.select_for_update().filter(pk__in=[d.pk for d in chosen]))
            busy = _busy_devices((d.pk for d in chosen), start, end)
            if busy:
                taken = ", ".join(f"{d.name} (event {busy[d.pk]})" for d in chosen if d.pk in busy)
                # A conflict with the current state (HTTP 409), not bad input: the same request
                # succeeds once the other event is cancelled.
                raise Conflict(f"Overlapping events on the same device are refused: {taken}.")
        else:
            enabled = list(FlexibleDevice.objects.select_for_update().filter(enabled=True))
            if not enabled:
                raise DRError("No device is enabled.")
            busy = _busy_devices((d.pk for d in enabled), start, end)
            chosen = [d for d in enabled if d.pk not in busy]
            if not chosen:
                raise Conflict("No enabled device is free in that window.")
        event.save()
        EventDevice.objects.bulk_create(
            EventDevice(event=event, device=d, planned_kw=(planned_kw or {}).get(d.name)) for d in chosen
        )
        _event_changed(event, None)
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
    return actuators.RecordingActuator().send(
        event=event, row=row, action=action, kw=kw, until=event.end, now=now
    )


def event_activate(*, event: DREvent, now: datetime | None = None) -> bool:
    """Start a scheduled event and dispatch it: its devices in priority order, each shedding what
    it can now, until the target is covered. False if it was not scheduled any more.

    An event out of bounds (a row written around the validation) is refused with DRError and
    stays scheduled; a device out of bounds is skipped, its note says why.
    """
    return _activate(event, _now(now)) is not None


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
                _dispatch_changed(row, EventDevice.Status.PLANNED)
        dispatched = event.target_kw - max(remaining, 0.0)
        note = "" if remaining <= EPSILON_KW else f"dispatched {dispatched:.3f} of {event.target_kw:.3f} kW"
        DREvent.objects.filter(pk=event.pk).update(dispatched_kw=dispatched, note=note)
        event.dispatched_kw, event.note = dispatched, note
        _event_changed(event, DREvent.Status.SCHEDULED)
    actuators.publish(commands)
    return [d.device for d in flex.devices if d.out_of_bounds]


def _dispatch_changed(row: EventDevice, previous: str) -> None:
    detail = {"event_id": row.event_id, "device": row.device.name, "kw": row.dispatched_kw, "note": row.note}
    actuators.announce("dispatch", row, previous, detail)


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
    now = _now(now)
    with transaction.atomic(using=DB):
        if not _transition(event, DREvent.Status.ACTIVE, DREvent.Status.COMPLETED, finished_at=now):
            return False
        commands = _restore(event, now)
        _event_changed(event, DREvent.Status.ACTIVE)
    actuators.publish(commands)
    if measure:
        event_measure(event=event)
    return True


def event_cancel(
    *, event: DREvent, cancelled_by: str, reason: str = "", now: datetime | None = None
) -> DREvent:
    """Cancel a scheduled or active event (an active one's devices are restored)."""
    now = _now(now)
    note = f"cancelled by {cancelled_by}" + (f": {reason}" if reason else "")
    for old in OPEN_EVENT:
        with transaction.atomic(using=DB):
            if not _transition(event, old, DREvent.Status.CANCELLED, finished_at=now, note=note):
                continue
            commands = _restore(event, now) if old == DREvent.Status.ACTIVE else []
            _event_changed(event, old)
        actuators.publish(commands)
        return event
    current = DREvent.objects.filter(pk=event.pk).values_list("status", flat=True).first()
    raise Conflict(f"Event {event.pk} is {current}; only scheduled or active events can be cancelled.")


def events_tick(*, now: datetime | None = None) -> dict[str, int]:
    """The scheduler's step: activate due events, complete ended ones (each transition once).

    An event whose whole window passed while nothing ran is completed without dispatch (its
    note says so) rather than started late.
    """
    now = _now(now)
    done = {"activated": 0, "completed": 0, "missed": 0, "errors": 0}
    # Ended events first: with back-to-back events on a device, its restore must go out before
    # the next event's shed (a controller obeys the last command), and the next event's
    # activation must not find the device still held. Completing (restoring the devices) needs
    # none of the row's values, so an event out of bounds is completed too: only its
    # measurement is refused.
    for event in DREvent.objects.filter(status=DREvent.Status.ACTIVE, end__lte=now).order_by("end"):
        with _skipping(done, f"event {event.pk}", "completing it"):
            if event_complete(event=event, now=now, measure=False):
                done["completed"] += 1
                _measure_counted(event, done)
    for event in DREvent.objects.filter(status=DREvent.Status.SCHEDULED, start__lte=now).order_by("start"):
        with _skipping(done, f"event {event.pk}", "starting it"):
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
        _event_changed(event, DREvent.Status.SCHEDULED)
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


# --- Delivery measurement -----------------------------------------------------------------------


def _floor_quarter(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC)
    return moment.replace(minute=moment.minute - moment.minute % 15, second=0, microsecond=0)


def _ceil_quarter(moment: datetime) -> datetime:
    floor = _floor_quarter(moment)
    return floor if floor == moment else floor + QUARTER


def _event_days(start: datetime, end: datetime, tz: ZoneInfo) -> set[date]:
    first, last = start.astimezone(tz).date(), (end - timedelta(microseconds=1)).astimezone(tz).date()
    return {first + timedelta(days=i) for i in range((last - first).days + 1)}


def event_measure(*, event: DREvent, now: datetime | None = None) -> DREvent:
    """Measure an event's delivery: baseline from the metered history of its dispatched devices'
    sensors (all its devices when none was shed), against their load during the event.

    Measured over the quarter-hours that cover the event. Days of other events that were
    activated (whatever their status now) are excluded from the baseline. Stores the report
    (or the reason there is none, such as "not enough data") in `performance`; repeatable,
    e.g. after late data arrived. An event out of bounds (a row written around the
    validation) is refused with DRError naming the fields.
    """
    if event.out_of_bounds:
        raise DRError.of(event.out_of_bounds, prefix=f"Event {event.pk} cannot be measured: ")
    now = _now(now)
    tz = _tz()
    rows = list(event.dispatches.select_related("device"))
    shed = [r for r in rows if r.status in (EventDevice.Status.SHED, EventDevice.Status.RESTORED)]
    sensor_ids = sorted({r.device.sensor_id for r in (shed or rows)})
    q_start, q_end = _floor_quarter(event.start), _ceil_quarter(event.end)
    request = baselines.BaselineRequest(
        method=event.baseline_method,  # type: ignore[arg-type]
        event_start=q_start,
        event_end=q_end,
        tz=tz,
        excluded_days=frozenset(),
    )
    history_start = q_start - timedelta(days=request.lookback_days + 2)
    excluded: set[date] = set()
    # Every event that was activated shed load on its days, including one cancelled after it
    # started; one completed unseen (never activated) did not, and its day stays eligible.
    for start, end in (
        DREvent.objects.filter(
            activated_at__isnull=False,
            end__gt=history_start,
            start__lt=q_start,
        )
        .exclude(pk=event.pk)
        .values_list("start", "end")
    ):
        # Only the days the baseline looks at: another row's start far in the past (out of
        # bounds) must not walk the calendar off its end, nor stop this measurement.
        excluded |= _event_days(max(start, history_start), min(end, q_end), tz)
    excluded.discard(request.event_day)
    request = baselines.BaselineRequest(
        method=request.method, event_start=q_start, event_end=q_end, tz=tz, excluded_days=frozenset(excluded)
    )
    report: dict[str, Any] = {
        "method": event.baseline_method,
        "sensors": sensor_ids,
        "measured_from": _iso(q_start),
        "measured_to": _iso(q_end),
        "committed_kw": event.target_kw,
        "excluded_days": sorted(d.isoformat() for d in excluded),
    }
    measured_kw: float | None = None
    if not sensor_ids:
        report.update(ok=False, reason="not enough data: the event has no devices to measure")
    else:
        # The rollup job runs every few minutes: bring the event's days up to date first.
        sensors_services.rollups_backfill(
            since=q_start - timedelta(hours=5), until=q_end, sensor_ids=sensor_ids
        )
        series = sensors_services.load_kw_quarter_hours(sensor_ids=sensor_ids, start=history_start, end=q_end)
        load = _summed(series)
        baseline = baselines.compute_baseline(request, load)
        report.update(_baseline_json(baseline))
        if baseline.ok:
            actual = {moment: kw for moment, kw in load.items() if q_start <= moment < q_end}
            delivery = baselines.measure_delivery(baseline, actual, event.target_kw)
            report.update(_delivery_json(delivery))
            measured_kw = delivery.mean_delivered_kw
    DREvent.objects.filter(pk=event.pk).update(performance=report, measured_kw=measured_kw, measured_at=now)
    event.performance, event.measured_kw, event.measured_at = report, measured_kw, now
    return event


def _summed(series: dict[str, dict[datetime, float]]) -> dict[datetime, float]:
    """The devices' total per quarter-hour, only where every sensor has a value (a partial sum
    would look like a load reduction)."""
    if not series:
        return {}
    common = set.intersection(*(set(s) for s in series.values()))
    return {moment: math.fsum(s[moment] for s in series.values()) for moment in sorted(common)}


def _baseline_json(result: baselines.BaselineResult) -> dict[str, Any]:
    return {
        "ok": result.ok,
        "reason": result.reason,
        "day_type": result.day_type,
        "days_used": [d.isoformat() for d in result.days_used],
        "days_skipped": [{"day": s.day.isoformat(), "reason": s.reason} for s in result.days_skipped],
        "adjustment_kind": result.adjustment_kind,
        "adjustment": result.adjustment,
        "adjustment_uncapped": result.adjustment_uncapped,
        "notes": list(result.notes),
    }


def _delivery_json(report: baselines.DeliveryReport) -> dict[str, Any]:
    return {
        "intervals": [
            {
                "start": _iso(i.start),
                "baseline_kw": i.baseline_kw,
                "actual_kw": i.actual_kw,
                "delivered_kw": i.delivered_kw,
                "delivered_kwh": i.delivered_kwh,
            }
            for i in report.intervals
        ],
        "energy_delivered_kwh": report.energy_delivered_kwh,
        "mean_delivered_kw": report.mean_delivered_kw,
        "share_of_commitment": report.share_of_commitment,
        "intervals_missing": report.intervals_missing,
    }


# --- The overview --------------------------------------------------------------------------------


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
