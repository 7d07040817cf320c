"""API shapes of the demand-response module; writes are validated again by its services."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from demand_response.models import (
    MAX_DEVICE_NAMES,
    MAX_DURATION_MINUTES,
    MAX_KW,
    MIN_KW,
    AutoResponsePolicy,
    BaselineMethod,
    DREvent,
    EventDevice,
    FlexibleDevice,
    Invitation,
    utc,
    validate_in_horizon,
)
from energy_dashboard.core.api import ModelSerializer, QuerySerializer, UTCDateTimeField


class FlexibleDeviceSerializer(ModelSerializer[FlexibleDevice]):
    """A flexible device; `name` is its key in URLs, `sensor_id` and `room` the sensors module's keys."""

    class Meta:
        model = FlexibleDevice
        fields = ["name", *FlexibleDevice.SETTINGS, "created_at", "updated_at"]
        read_only_fields = ["created_at", "updated_at"]
        # Uniqueness and limits are the service's checks, with the module's own messages.
        validators: list[Any] = []
        extra_kwargs: dict[str, dict[str, Any]] = {"name": {"validators": []}}


class InvitationSerializer(ModelSerializer[Invitation]):
    """An invitation and its answer."""

    event_id = serializers.SerializerMethodField()
    committed_kw = serializers.FloatField(read_only=True)
    duration_minutes = serializers.SerializerMethodField()

    class Meta:
        model = Invitation
        fields = [
            "id",
            "source",
            "external_id",
            "programme",
            "baseline_method",
            "reduction_kw",
            "start",
            "end",
            "duration_minutes",
            "response_deadline",
            "status",
            "answered_by",
            "answered_at",
            "reason",
            "commitment",
            "committed_kw",
            "event_id",
            "reported_at",
            "created_at",
        ]
        read_only_fields = fields

    def get_event_id(self, invitation: Invitation) -> int | None:
        event = getattr(invitation, "event", None)
        return event.pk if event is not None else None

    def get_duration_minutes(self, invitation: Invitation) -> float:
        return invitation.duration.total_seconds() / 60


# The bounds live beside the model's fields (demand_response/models.py, docs/demand-response.md
# "Bounds"); the write serializers that are not ModelSerializers repeat them field by field, and
# run the model's clean() for the rules across fields, so both name the field at fault.


def _kw_field(**kwargs: Any) -> serializers.FloatField:
    return serializers.FloatField(min_value=MIN_KW, max_value=MAX_KW, **kwargs)


def _instant_field(**kwargs: Any) -> serializers.DateTimeField:
    return UTCDateTimeField(validators=[validate_in_horizon], **kwargs)


def _device_names(**kwargs: Any) -> serializers.ListField:
    return serializers.ListField(
        child=serializers.SlugField(max_length=64), max_length=MAX_DEVICE_NAMES, **kwargs
    )


def _positive(value: float) -> None:
    if value <= 0:  # also -0.0
        raise serializers.ValidationError("Must be more than 0.")


def _clean(row: Invitation | DREvent, renamed: dict[str, str] | None = None) -> None:
    """Run the model's rules across fields on an unsaved row, as the service will: a 400 naming
    the field (`renamed` maps a model field to the API's, e.g. end -> duration_minutes)."""
    try:
        row.clean()
    except DjangoValidationError as exc:
        renamed = renamed or {}
        raise serializers.ValidationError(
            {renamed.get(name, name): messages for name, messages in exc.message_dict.items()}
        ) from exc


class InvitationCreateSerializer(serializers.Serializer[Any]):
    """What an integrator (or the OpenADR VEN) sends to record an invitation."""

    reduction_kw = _kw_field()
    start = _instant_field()
    end = _instant_field(required=False)
    duration_minutes = serializers.FloatField(
        required=False, max_value=MAX_DURATION_MINUTES, validators=[_positive], help_text="Instead of end."
    )
    response_deadline = _instant_field()
    programme = serializers.CharField(max_length=64, required=False, default="", allow_blank=True)
    # Not given: the programme's (DR_PROGRAMME_BASELINES, else DR_DEFAULT_BASELINE).
    baseline_method = serializers.ChoiceField(choices=BaselineMethod.choices, required=False, default=None)
    # DRF's metaclass takes declared fields off the class, so this does not shadow Field.source
    # as django-stubs' view of the class says.
    source = serializers.CharField(max_length=32, default="api")  # type: ignore[assignment]
    external_id = serializers.CharField(max_length=128, required=False, allow_null=True, default=None)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """The window: `end` from `duration_minutes` when given, then the model's rules."""
        if "end" not in attrs and "duration_minutes" not in attrs:
            raise serializers.ValidationError("Give end or duration_minutes.")
        if "end" in attrs and "duration_minutes" in attrs:
            raise serializers.ValidationError("Give end or duration_minutes, not both.")
        renamed = {}
        if "duration_minutes" in attrs:
            # Bounded above and start within the horizon: this never leaves the calendar.
            attrs["end"] = utc(attrs["start"]) + timedelta(minutes=attrs.pop("duration_minutes"))
            renamed["end"] = "duration_minutes"
        _clean(
            Invitation(start=attrs["start"], end=attrs["end"], response_deadline=attrs["response_deadline"]),
            renamed,
        )
        return attrs


class AcceptSerializer(serializers.Serializer[Any]):
    """An operator's acceptance: optionally which devices to commit, and why."""

    devices = _device_names(required=False, allow_empty=False)
    reason = serializers.CharField(required=False, default="", allow_blank=True)


class DeclineSerializer(serializers.Serializer[Any]):
    """An operator's refusal, with its reason."""

    reason = serializers.CharField()


class EventDeviceSerializer(ModelSerializer[EventDevice]):
    """One device's part in an event."""

    device = serializers.CharField(source="device.name")

    class Meta:
        model = EventDevice
        fields = ["device", "planned_kw", "dispatched_kw", "status", "note", "shed_at", "restored_at"]
        read_only_fields = fields


class DREventSerializer(ModelSerializer[DREvent]):
    """An event with its dispatch per device."""

    dispatches = EventDeviceSerializer(many=True, read_only=True)

    class Meta:
        model = DREvent
        fields = [
            "id",
            "name",
            "programme",
            "invitation",
            "target_kw",
            "start",
            "end",
            "status",
            "baseline_method",
            "created_by",
            "dispatched_kw",
            "measured_kw",
            "note",
            "activated_at",
            "finished_at",
            "measured_at",
            "dispatches",
            "created_at",
        ]
        read_only_fields = fields


class EventCreateSerializer(serializers.Serializer[Any]):
    """A manual event: without devices it takes every enabled device free in the window."""

    target_kw = _kw_field()
    start = _instant_field()
    end = _instant_field()
    devices = _device_names(required=False, allow_empty=False)
    name = serializers.CharField(max_length=128, required=False, default="", allow_blank=True)
    programme = serializers.CharField(max_length=64, required=False, default="", allow_blank=True)
    # Not given: the programme's (DR_PROGRAMME_BASELINES, else DR_DEFAULT_BASELINE).
    baseline_method = serializers.ChoiceField(choices=BaselineMethod.choices, required=False, default=None)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """The model's rules on the window."""
        _clean(DREvent(start=attrs["start"], end=attrs["end"]))
        return attrs


class CancelSerializer(serializers.Serializer[Any]):
    """Why an event is cancelled."""

    reason = serializers.CharField(required=False, default="", allow_blank=True)


class PolicySerializer(ModelSerializer[AutoResponsePolicy]):
    """The auto-response policy."""

    # The model's validators (validate_weekdays, validate_device_names), as list fields.
    allowed_days = serializers.ListField(
        child=serializers.IntegerField(min_value=0, max_value=6), allow_empty=False, max_length=7
    )
    excluded_devices = _device_names(required=False)

    class Meta:
        model = AutoResponsePolicy
        fields = [
            "enabled",
            "allowed_days",
            "allowed_from_hour",
            "allowed_until_hour",
            "max_duration_minutes",
            "min_notice_minutes",
            "max_share",
            "excluded_devices",
            "updated_at",
            "updated_by",
        ]
        read_only_fields = ["updated_at", "updated_by"]
        validators: list[Any] = []


class FlexibilityQuery(QuerySerializer):
    """Query of GET /flexibility: now, or a window [start, end)."""

    start = _instant_field(required=False)
    end = _instant_field(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("start" in attrs) != ("end" in attrs):
            raise serializers.ValidationError("Give both start and end, or neither.")
        if "start" in attrs and utc(attrs["end"]) <= utc(attrs["start"]):
            raise serializers.ValidationError("end must be after start.")
        return attrs
