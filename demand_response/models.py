"""Models of the demand_response module: flexible devices, grid invitations, events, dispatch,
and the auto-response policy. Sensors and rooms are referred to by their stable keys (strings),
never by foreign keys: they live in another module's database."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any, ClassVar

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from energy_dashboard.core import limits
from energy_dashboard.core.clock import iso_z

# --- Bounds (docs/demand-response.md, "Bounds") ------------------------------------------------
# What the API, the admin and the OpenADR VEN accept, so that every value stored can be computed
# with by the services and the periodic jobs: dates within the product's horizon
# (energy_dashboard/core/limits.py), durations and counts with an explicit maximum.

# An event (or invitation) lasts at most this: beyond it a request is a mistake (a unit slip,
# a typo) rather than a programme's ask.
MAX_DURATION = timedelta(days=7)
MAX_DURATION_MINUTES = int(MAX_DURATION.total_seconds() // 60)
# 1 GW: far above any one building's load, well below a unit error (W sent as kW).
MAX_KW = 1_000_000.0
# 1 W: a smaller reduction or target is no request (and falls below the dispatch's rounding).
MIN_KW = 0.001
# Priorities only order devices; a bound keeps them inside every database's integer column.
MAX_PRIORITY = 1_000_000
# No invitation starts further ahead than SCHEDULE_AHEAD: a longer notice could never be met.
MAX_NOTICE_MINUTES = int(limits.SCHEDULE_AHEAD.total_seconds() // 60)
# Device names in one list (excluded devices, an acceptance's or an event's devices).
MAX_DEVICE_NAMES = 1000


def validate_finite(value: float) -> None:
    """A number, not NaN or an infinity (both compare false, or true, with every bound)."""
    if not math.isfinite(value):
        raise ValidationError("Must be a finite number.", code="not_finite")


def validate_share(value: float) -> None:
    """A share in (0, 1]."""
    if not 0 < value <= 1:
        raise ValidationError("Must be in (0, 1].", code="share")


def validate_in_horizon(value: datetime) -> None:
    """An instant between limits.EARLIEST (included) and limits.LATEST (excluded)."""
    if not limits.within_horizon(value):
        raise ValidationError(
            f"Must lie between {limits.EARLIEST:%Y-%m-%d} and {limits.LATEST:%Y-%m-%d} (UTC).",
            code="horizon",
        )


def validate_weekdays(value: Any) -> None:
    """A non-empty list of weekdays, 0 (Monday) to 6 (Sunday)."""
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= 6 for d in value)
    ):
        raise ValidationError(
            "A non-empty list of weekdays, 0 (Monday) to 6 (Sunday); to answer nothing, disable the policy.",
            code="weekdays",
        )


def validate_device_names(value: Any) -> None:
    """A list of at most MAX_DEVICE_NAMES device names."""
    if not isinstance(value, list) or not all(isinstance(n, str) for n in value):
        raise ValidationError("A list of device names.", code="device_names")
    if len(value) > MAX_DEVICE_NAMES:
        raise ValidationError(f"At most {MAX_DEVICE_NAMES} device names.", code="device_names")


def _bounds_errors(instance: models.Model, fields: Sequence[str]) -> dict[str, list[str]]:
    """What breaks the bounds or rules among a stored row's `fields` (the validators and clean()
    that a new row passes): field -> messages, empty when nothing does. For the periodic jobs,
    which must not compute with a row written around the validation."""
    exclude = [f.name for f in instance._meta.fields if f.name not in fields]
    try:
        instance.full_clean(exclude=exclude, validate_unique=False, validate_constraints=False)
    except ValidationError as exc:
        return exc.message_dict
    return {}


KW_VALIDATORS: list[Callable[[Any], None]] = [
    validate_finite,
    MinValueValidator(MIN_KW),
    MaxValueValidator(MAX_KW),
]


def utc(moment: datetime) -> datetime:
    """`moment` in UTC, for arithmetic: what the API and the admin read is in the building's
    zone, and two datetimes of one zone subtract and compare on its wall clock, an hour off
    (or in the wrong order) across a daylight-saving change."""
    return moment.astimezone(UTC)


def _check_window(instance: Invitation | DREvent, what: str, errors: dict[str, list[str]]) -> None:
    """The window rules of a new or stored invitation or event: end after start, at most
    MAX_DURATION; a new one starts no further ahead than SCHEDULE_AHEAD."""
    start, end = instance.start, instance.end
    if not isinstance(start, datetime) or not isinstance(end, datetime):
        return  # the fields' own errors say why
    start, end = utc(start), utc(end)
    if end <= start:
        errors.setdefault("end", []).append(f"{what} ends before it starts: end must be after start.")
    elif end - start > MAX_DURATION:
        errors.setdefault("end", []).append(
            f"{what} lasts at most {MAX_DURATION.days} days ({MAX_DURATION_MINUTES} min)."
        )
    # Only for a new row: a stored one is not refused later because time moved on.
    if instance._state.adding and start - timezone.now() > limits.SCHEDULE_AHEAD:
        errors.setdefault("start", []).append(
            f"{what} starts at most {limits.SCHEDULE_AHEAD.days} days ahead."
        )


class BaselineMethod(models.TextChoices):
    """The customer baseline methods of demand_response.baselines."""

    CAISO_10OF10 = "caiso_10of10", "CAISO 10 of 10"
    HIGH_4OF5 = "high_4of5", "High 4 of 5"


class FlexibleDevice(models.Model):
    """A load the building can shed during an event, metered by one sensor."""

    class Category(models.TextChoices):
        HVAC = "hvac", "HVAC"
        LIGHTING = "lighting", "Lighting"
        EV_CHARGER = "ev_charger", "EV charger"
        PROCESS = "process", "Process"
        OTHER = "other", "Other"

    name = models.SlugField(max_length=64, unique=True, help_text="Key in URLs and MQTT topics.")
    sensor_id = models.SlugField(max_length=64, help_text="The sensor that meters the device.")
    room = models.CharField(max_length=64, blank=True, help_text="The room's name.")
    category = models.CharField(max_length=16, choices=Category.choices, default=Category.OTHER)
    max_shed_kw = models.FloatField(
        null=True,
        blank=True,
        validators=[validate_finite, MinValueValidator(0), MaxValueValidator(MAX_KW)],
        help_text="At most this many kW.",
    )
    max_shed_share = models.FloatField(
        null=True,
        blank=True,
        validators=[validate_finite, validate_share],
        help_text="At most this share (0-1] of its current load.",
    )
    priority = models.PositiveIntegerField(
        default=100, validators=[MaxValueValidator(MAX_PRIORITY)], help_text="Lower numbers shed first."
    )
    min_event_minutes = models.PositiveIntegerField(
        default=0, validators=[MaxValueValidator(MAX_DURATION_MINUTES)]
    )
    max_event_minutes = models.PositiveIntegerField(
        null=True, blank=True, validators=[MaxValueValidator(MAX_DURATION_MINUTES)]
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    # Its settings: what an operator writes besides the name (the key, given once), in the order
    # the admin's form and the API show them. The admin, the serializer and device_create's
    # keywords all follow this one list.
    SETTINGS: ClassVar[tuple[str, ...]] = (
        "sensor_id",
        "room",
        "category",
        "max_shed_kw",
        "max_shed_share",
        "priority",
        "min_event_minutes",
        "max_event_minutes",
        "enabled",
    )

    class Meta:
        ordering = ["priority", "name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(max_shed_kw__isnull=False) | Q(max_shed_share__isnull=False),
                name="dr_device_has_a_limit",
            ),
            models.CheckConstraint(
                condition=Q(max_shed_kw__isnull=True) | Q(max_shed_kw__gte=0),
                name="dr_device_kw_not_negative",
            ),
            models.CheckConstraint(
                condition=Q(max_shed_share__isnull=True)
                | (Q(max_shed_share__gt=0) & Q(max_shed_share__lte=1)),
                name="dr_device_share_in_range",
            ),
            models.CheckConstraint(
                condition=Q(max_event_minutes__isnull=True)
                | Q(max_event_minutes__gte=F("min_event_minutes")),
                name="dr_device_event_length_range",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @cached_property
    def out_of_bounds(self) -> dict[str, list[str]]:
        """The fields flexibility is computed with that break their bounds (empty: none); once per
        loaded row, as a job asks it for every invitation it answers."""
        return _bounds_errors(
            self, ["max_shed_kw", "max_shed_share", "priority", "min_event_minutes", "max_event_minutes"]
        )

    def clean(self) -> None:
        """The rules across fields: at least one limit, a maximum length not below the minimum."""
        errors: dict[str, list[str]] = {}
        if self.max_shed_kw is None and self.max_shed_share is None:
            errors["max_shed_kw"] = ["Give max_shed_kw, max_shed_share or both."]
        if (
            isinstance(self.max_event_minutes, int)
            and isinstance(self.min_event_minutes, int)
            and self.max_event_minutes < self.min_event_minutes
        ):
            errors["max_event_minutes"] = ["max_event_minutes must not be below min_event_minutes."]
        if errors:
            raise ValidationError(errors)


class Invitation(models.Model):
    """A request from the grid (or an aggregator) to cut load for a period, and its answer."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        ACCEPTED = "accepted", "Accepted"
        DECLINED = "declined", "Declined"
        EXPIRED = "expired", "Expired"

    source = models.CharField(max_length=32, default="api", help_text="api, openadr, ...")
    # NULL, not "": unique per source only when there is one (the conditional constraint below).
    external_id = models.CharField(  # noqa: DJ001
        max_length=128, null=True, blank=True, help_text="The sender's id (e.g. the VTN's event id)."
    )
    programme = models.CharField(max_length=64, blank=True)
    baseline_method = models.CharField(
        max_length=16, choices=BaselineMethod.choices, default=BaselineMethod.CAISO_10OF10
    )
    reduction_kw = models.FloatField(validators=KW_VALIDATORS, help_text="Requested reduction.")
    start = models.DateTimeField(validators=[validate_in_horizon])
    end = models.DateTimeField(validators=[validate_in_horizon])
    response_deadline = models.DateTimeField(validators=[validate_in_horizon])
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    answered_by = models.CharField(max_length=150, blank=True, help_text="operator:<name>, policy or system.")
    answered_at = models.DateTimeField(null=True, blank=True)
    reason = models.TextField(blank=True)
    # [{"device": name, "kw": committed kW}], in dispatch order.
    commitment = models.JSONField(default=list, blank=True)
    # Set by whoever relays the answer back to the sender (the OpenADR VEN); None = not yet.
    reported_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-start", "-pk"]
        constraints = [
            models.CheckConstraint(condition=Q(reduction_kw__gt=0), name="dr_invitation_reduction_positive"),
            models.CheckConstraint(condition=Q(end__gt=F("start")), name="dr_invitation_ends_after_start"),
            models.CheckConstraint(
                condition=Q(response_deadline__lte=F("start")), name="dr_invitation_deadline_by_start"
            ),
            models.UniqueConstraint(
                fields=["source", "external_id"],
                condition=Q(external_id__isnull=False),
                name="dr_invitation_unique_external_id",
            ),
        ]
        indexes = [models.Index(fields=["status", "response_deadline"], name="dr_invitation_pending")]

    def __str__(self) -> str:
        return f"invitation {self.pk} ({self.reduction_kw} kW, {self.status})"

    @cached_property
    def out_of_bounds(self) -> dict[str, list[str]]:
        """The fields the auto-response computes with that break their bounds (empty: none)."""
        return _bounds_errors(self, ["reduction_kw", "start", "end", "response_deadline", "baseline_method"])

    def clean(self) -> None:
        """The window rules, and a response deadline at or before the start."""
        errors: dict[str, list[str]] = {}
        _check_window(self, "The invitation", errors)
        if (
            isinstance(self.response_deadline, datetime)
            and isinstance(self.start, datetime)
            and self.response_deadline > self.start
        ):
            errors["response_deadline"] = [
                "The response deadline is after the start: it must be at or before the start."
            ]
        if errors:
            raise ValidationError(errors)

    @property
    def duration(self) -> timedelta:
        """How long the requested reduction lasts."""
        return utc(self.end) - utc(self.start)

    @property
    def committed_kw(self) -> float:
        """The kW the committed devices cover."""
        return sum(float(item["kw"]) for item in self.commitment)


class DREvent(models.Model):
    """A scheduled or manual load reduction: dispatched at its start, measured at its end."""

    class Status(models.TextChoices):
        SCHEDULED = "scheduled", "Scheduled"
        ACTIVE = "active", "Active"
        COMPLETED = "completed", "Completed"
        CANCELLED = "cancelled", "Cancelled"

    invitation = models.OneToOneField(
        Invitation, null=True, blank=True, on_delete=models.PROTECT, related_name="event"
    )
    name = models.CharField(max_length=128, blank=True)
    programme = models.CharField(max_length=64, blank=True)
    target_kw = models.FloatField(validators=KW_VALIDATORS)
    start = models.DateTimeField(validators=[validate_in_horizon])
    end = models.DateTimeField(validators=[validate_in_horizon])
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.SCHEDULED)
    baseline_method = models.CharField(
        max_length=16, choices=BaselineMethod.choices, default=BaselineMethod.CAISO_10OF10
    )
    created_by = models.CharField(max_length=150, blank=True)
    dispatched_kw = models.FloatField(null=True, blank=True, help_text="Sum of the shed commands sent.")
    note = models.TextField(blank=True, help_text="Dispatch shortfall, cancellation reason, ...")
    activated_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # The delivery measurement: the mean delivered kW, and the whole report (see services).
    measured_kw = models.FloatField(null=True, blank=True)
    performance = models.JSONField(null=True, blank=True)
    measured_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-start", "-pk"]
        constraints = [
            models.CheckConstraint(condition=Q(target_kw__gt=0), name="dr_event_target_positive"),
            models.CheckConstraint(condition=Q(end__gt=F("start")), name="dr_event_ends_after_start"),
        ]
        indexes = [models.Index(fields=["status", "start"], name="dr_event_due")]

    def __str__(self) -> str:
        return f"event {self.pk} ({self.target_kw} kW, {self.status})"

    @cached_property
    def out_of_bounds(self) -> dict[str, list[str]]:
        """The fields dispatch and measurement compute with that break their bounds (empty: none)."""
        return _bounds_errors(self, ["target_kw", "start", "end", "baseline_method"])

    def clean(self) -> None:
        """The window rules."""
        errors: dict[str, list[str]] = {}
        _check_window(self, "The event", errors)
        if errors:
            raise ValidationError(errors)


# Events whose devices are taken: a device is in at most one of these at any instant. Completed
# and cancelled events hold nothing.
OPEN_EVENT = (DREvent.Status.SCHEDULED, DREvent.Status.ACTIVE)


class EventDeviceQuerySet(models.QuerySet["EventDevice"]):
    """Devices' parts in events, and the two rules of when an event takes a device."""

    def overlapping(self, start: datetime, end: datetime) -> EventDeviceQuerySet:
        """The overlap rule, stated once: the parts whose event is open (scheduled or active) and
        whose window overlaps [start, end). Windows are half-open, so back-to-back windows (one's
        end is the other's start) do not overlap. What flexibility over a window and a new
        event's claim on its devices both ask."""
        return self.filter(event__status__in=OPEN_EVENT, event__start__lt=end, event__end__gt=start)

    def holding_at(self, now: datetime) -> EventDeviceQuerySet:
        """The parts whose event holds its device at `now`: an active event until the scheduler
        completes it (the device stays shed past the event's end until then), a scheduled one
        whose start has come and whose end has not (the next tick sheds it). What flexibility
        now asks."""
        active = Q(event__status=DREvent.Status.ACTIVE)
        started = Q(event__status=DREvent.Status.SCHEDULED, event__end__gt=now)
        return self.filter(event__start__lte=now).filter(active | started)

    def taken(self, device_pks: Iterable[int], exclude_event: int | None = None) -> dict[int, int]:
        """Which of the devices these parts take: device pk -> its event's id. `exclude_event`
        is the event asking: its own devices are not taken from it."""
        rows = self.filter(device_id__in=list(device_pks))
        if exclude_event is not None:
            rows = rows.exclude(event_id=exclude_event)
        return dict(rows.values_list("device_id", "event_id"))


class EventDevice(models.Model):
    """One device's part in an event: what was planned, what was dispatched, its state."""

    class Status(models.TextChoices):
        PLANNED = "planned", "Planned"
        SHED = "shed", "Shed"
        SKIPPED = "skipped", "Skipped"
        RESTORED = "restored", "Restored"

    event = models.ForeignKey(DREvent, on_delete=models.CASCADE, related_name="dispatches")
    device = models.ForeignKey(FlexibleDevice, on_delete=models.PROTECT, related_name="dispatches")
    planned_kw = models.FloatField(null=True, blank=True, help_text="Committed kW; None = as available.")
    dispatched_kw = models.FloatField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PLANNED)
    note = models.CharField(max_length=200, blank=True)
    shed_at = models.DateTimeField(null=True, blank=True)
    restored_at = models.DateTimeField(null=True, blank=True)

    objects = EventDeviceQuerySet.as_manager()

    class Meta:
        ordering = ["event", "device__priority", "device__name"]
        constraints = [models.UniqueConstraint(fields=["event", "device"], name="dr_event_device_once")]

    def __str__(self) -> str:
        return f"{self.device_id} in event {self.event_id}: {self.status}"


class DispatchCommand(models.Model):
    """A command sent to a device's controller (the RecordingActuator's log)."""

    class Action(models.TextChoices):
        SHED = "shed", "Shed"
        RESTORE = "restore", "Restore"

    event = models.ForeignKey(DREvent, on_delete=models.CASCADE, related_name="commands")
    device = models.ForeignKey(FlexibleDevice, on_delete=models.PROTECT, related_name="commands")
    action = models.CharField(max_length=8, choices=Action.choices)
    kw = models.FloatField()
    until = models.DateTimeField()
    sent_at = models.DateTimeField()
    # "" = not published (no MQTT_URL); "published" or "failed: <why>".
    mqtt = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["sent_at", "pk"]

    def __str__(self) -> str:
        return f"{self.action} {self.kw} kW on {self.device_id} (event {self.event_id})"

    def payload(self) -> dict[str, Any]:
        """The JSON body sent to the device (MQTT) and shown in the API."""
        return {
            "event_id": self.event_id,
            "device": self.device.name,
            "action": self.action,
            "kw": round(self.kw, 3),
            "until": iso_z(self.until),
            "sent_at": iso_z(self.sent_at),
        }


def _weekdays() -> list[int]:
    return [0, 1, 2, 3, 4]


class AutoResponsePolicy(models.Model):
    """How invitations are answered without an operator (one row, pk 1)."""

    enabled = models.BooleanField(default=False)
    allowed_days = models.JSONField(
        default=_weekdays, validators=[validate_weekdays], help_text="Local weekdays, 0 = Monday."
    )
    allowed_from_hour = models.PositiveSmallIntegerField(
        default=0, validators=[MaxValueValidator(23)], help_text="Local hour, 0-23."
    )
    allowed_until_hour = models.PositiveSmallIntegerField(
        default=24, validators=[MinValueValidator(1), MaxValueValidator(24)], help_text="Local hour, 1-24."
    )
    max_duration_minutes = models.PositiveIntegerField(
        default=240, validators=[MinValueValidator(1), MaxValueValidator(MAX_DURATION_MINUTES)]
    )
    min_notice_minutes = models.PositiveIntegerField(
        default=60, validators=[MaxValueValidator(MAX_NOTICE_MINUTES)]
    )
    max_share = models.FloatField(
        default=0.8,
        validators=[validate_finite, validate_share],
        help_text="Share (0-1] of the flexibility to commit.",
    )
    excluded_devices = models.JSONField(
        default=list, blank=True, validators=[validate_device_names], help_text="Device names."
    )
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.CharField(max_length=150, blank=True)

    class Meta:
        verbose_name_plural = "auto-response policy"
        constraints = [
            models.CheckConstraint(condition=Q(pk=1), name="dr_policy_singleton"),
            models.CheckConstraint(
                condition=Q(max_share__gt=0) & Q(max_share__lte=1), name="dr_policy_share_in_range"
            ),
            models.CheckConstraint(
                condition=Q(allowed_from_hour__lt=F("allowed_until_hour")) & Q(allowed_until_hour__lte=24),
                name="dr_policy_hours_range",
            ),
        ]

    def __str__(self) -> str:
        return "auto-response policy"

    @cached_property
    def out_of_bounds(self) -> dict[str, list[str]]:
        """The rules that break their bounds (empty: none): such a policy answers nothing."""
        return _bounds_errors(
            self,
            [
                "allowed_days",
                "allowed_from_hour",
                "allowed_until_hour",
                "max_duration_minutes",
                "min_notice_minutes",
                "max_share",
                "excluded_devices",
            ],
        )

    def clean(self) -> None:
        """The allowed hours in order."""
        start, end = self.allowed_from_hour, self.allowed_until_hour
        if isinstance(start, int) and isinstance(end, int) and not start < end:
            raise ValidationError(
                {"allowed_until_hour": ["The allowed hours need allowed_from_hour < allowed_until_hour."]}
            )
