"""Shapes of the MQTT API. The broker's password is write-only; what a message held (the examples
kept with bad input) is shown to operators only, as what remote servers said is."""

from __future__ import annotations

from collections import abc
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from energy_dashboard.core import roles
from ingestion.mqtt import services
from ingestion.mqtt.models import Broker, Mapping
from ingestion.mqtt.payloads import METRICS, PRESETS
from ingestion.validators import validate_printable


def _for_operators(context: abc.Mapping[str, Any]) -> bool:
    request = context.get("request")
    return request is not None and roles.can_operate(request.user)


class MqttMessageExample(serializers.Serializer[Any]):
    """A message kept as an example: its topic and the start of its payload."""

    topic = serializers.CharField()
    payload = serializers.CharField()
    at = serializers.DateTimeField()


class MqttProblemExample(MqttMessageExample):
    """The last message of one kind of bad input, why, and how many of that kind."""

    reason = serializers.CharField()
    count = serializers.IntegerField()


class BrokerLiveState(serializers.Serializer[Any]):
    """What the running ingester says of a broker (counts since it started)."""

    connected = serializers.BooleanField()
    connected_since = serializers.FloatField(allow_null=True, help_text="epoch seconds")
    error = serializers.CharField()
    error_kind = serializers.CharField()
    last_message_at = serializers.FloatField(allow_null=True, help_text="epoch seconds")
    messages_in = serializers.IntegerField()
    readings_stored = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    rejected = serializers.IntegerField()
    malformed = serializers.IntegerField()
    unknown_sensors = serializers.IntegerField()
    unknown_topics = serializers.IntegerField()


class BrokerSerializer(serializers.ModelSerializer[Broker]):
    """A broker; `password` may be written, never read. `state` is the running ingester's view
    (null when it is not running); `last_unclaimed` is empty but for operators."""

    password = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        max_length=256,
        validators=[validate_printable],
    )
    has_password = serializers.SerializerMethodField()
    state = serializers.SerializerMethodField()
    last_unclaimed = serializers.SerializerMethodField()

    class Meta:
        model = Broker
        fields = [
            "id",
            "name",
            "host",
            "port",
            "tls",
            "ca_file",
            "client_cert_file",
            "client_key_file",
            "username",
            "password",
            "has_password",
            "client_id",
            "watch_topics",
            "enabled",
            "state",
            *Broker.STATE_FIELDS,
        ]
        read_only_fields = Broker.STATE_FIELDS

    def get_has_password(self, broker: Broker) -> bool:
        return bool(broker.password)

    @extend_schema_field(BrokerLiveState(allow_null=True))
    def get_state(self, broker: Broker) -> dict[str, Any] | None:
        try:
            found = services.live_state(broker)
        except Exception:  # Redis down: /health says so; the broker is still shown
            return None
        return BrokerLiveState(found).data if found else None

    @extend_schema_field(MqttMessageExample(allow_null=True))
    def get_last_unclaimed(self, broker: Broker) -> dict[str, Any] | None:
        if not broker.last_unclaimed or not _for_operators(self.context):
            return None
        return MqttMessageExample(broker.last_unclaimed).data

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        tls = attrs.get("tls", getattr(self.instance, "tls", False))
        cert = attrs.get("client_cert_file", getattr(self.instance, "client_cert_file", ""))
        key = attrs.get("client_key_file", getattr(self.instance, "client_key_file", ""))
        if (cert or key) and not tls:
            raise serializers.ValidationError("a client certificate needs tls")
        if bool(cert) != bool(key):
            raise serializers.ValidationError("give the client certificate and its key together")
        return attrs


class MappingFieldSerializer(serializers.Serializer[Any]):
    """One value a mapping reads from a message."""

    path = serializers.CharField(
        max_length=128,
        allow_blank=True,
        help_text="JSON: a dotted path (aenergy.total); plain numbers: the text of the key level, or empty",
    )
    metric = serializers.ChoiceField(choices=list(METRICS))
    unit = serializers.CharField(max_length=128, allow_blank=True, required=False, default="")
    sensor_suffix = serializers.CharField(max_length=32, allow_blank=True, required=False)


class MappingSerializer(serializers.ModelSerializer[Mapping]):
    """A mapping of a broker's topic filter to readings. On creation the fields not given take
    the preset's values; `last_problems` (examples of bad input) is empty but for operators."""

    broker = serializers.SlugRelatedField(slug_field="name", queryset=Broker.objects.all())
    # DRF's metaclass takes declared fields off the class: this does not shadow Serializer.fields
    # as django-stubs' view of the class says (nor `label` Field.label, below).
    fields = MappingFieldSerializer(many=True, required=False)  # type: ignore[assignment]
    last_problems = serializers.SerializerMethodField()

    class Meta:
        model = Mapping
        fields = [
            "id",
            "broker",
            "name",
            "enabled",
            "topic",
            "preset",
            "payload_format",
            "sensor_level",
            "sensor_field",
            "sensor_prefix",
            "key_level",
            "fields",
            "time_field",
            "time_zone",
            "register_unknown",
            "priority",
            *Mapping.STATE_FIELDS,
        ]
        read_only_fields = Mapping.STATE_FIELDS
        extra_kwargs = {"topic": {"required": False}}

    @extend_schema_field(serializers.DictField(child=MqttProblemExample()))
    def get_last_problems(self, mapping: Mapping) -> dict[str, Any]:
        if not _for_operators(self.context):
            return {}
        return {kind: MqttProblemExample(entry).data for kind, entry in (mapping.last_problems or {}).items()}

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "fields" in attrs:
            attrs["fields"] = [dict(entry) for entry in attrs["fields"]]
        attrs = services.mapping_fill_from_preset(attrs, creating=self.instance is None)
        if self.instance is None and not attrs.get("topic"):
            raise serializers.ValidationError({"topic": "a topic filter is required"})
        # The model's own rules (clean), on the mapping as it would be saved.
        candidate = Mapping(**{**self._current(), **attrs})
        try:
            candidate.clean()
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.message_dict) from None
        return attrs

    def _current(self) -> dict[str, Any]:
        if self.instance is None:
            return {}
        names = [f.name for f in Mapping._meta.concrete_fields if f.name not in ("id",)]
        return {name: getattr(self.instance, name) for name in names}


class MqttPresetSerializer(serializers.Serializer[Any]):
    """A built-in preset: what a mapping created from it is filled with."""

    name = serializers.CharField()
    label = serializers.CharField()  # type: ignore[assignment]
    topic = serializers.CharField()
    payload_format = serializers.CharField()
    sensor_level = serializers.IntegerField(allow_null=True)
    sensor_field = serializers.CharField(allow_blank=True)
    key_level = serializers.IntegerField(allow_null=True)
    time_field = serializers.CharField(allow_blank=True)
    fields = MappingFieldSerializer(many=True)  # type: ignore[assignment]


def presets() -> list[dict[str, Any]]:
    """Every preset, for the API."""
    labels = dict(Mapping.Preset.choices)
    return [
        {
            "name": name,
            "label": labels[name],
            "sensor_level": None,
            "sensor_field": "",
            "key_level": None,
            "time_field": "",
            **values,
        }
        for name, values in PRESETS.items()
    ]
