"""MQTT brokers and the mappings that turn their messages into readings (ingestion's tables).

Imported by `ingestion.models`, so Django finds them in the ingestion app (and on its database
alias). What the ingester counts while it runs (connected, messages in) lives in Redis
(`ingestion.mqtt.state`); what an operator must be able to look at later (bad input, with the
last example of each kind) is kept here.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from ingestion.validators import (
    validate_host,
    validate_printable,
    validate_secret_path,
    validate_time_zone,
)

# A topic filter or a topic: MQTT allows 65,535 bytes; real ones are a few dozen characters.
MAX_TOPIC_CHARS = 255
# Fields a mapping may take out of one message (a Shelly Pro 3EM status has about 30).
MAX_FIELDS = 64
# A topic level index: far past any real topic's depth.
MAX_TOPIC_LEVEL = 32
# What is kept of a bad message's payload as its example (shown to operators).
EXAMPLE_MAX_CHARS = 300


def validate_topic_filter(value: str) -> None:
    """An MQTT topic filter: `+` alone in its level, `#` alone and last (MQTT 3.1.1, 4.7.1)."""
    validate_printable(value)
    if not value:
        raise ValidationError("a topic filter is required", code="topic")
    levels = value.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            raise ValidationError("'#' must be a whole level, and the last", code="topic")
        if "+" in level and level != "+":
            raise ValidationError("'+' must be a whole level", code="topic")


def validate_topic_filters(value: str) -> None:
    """Space-separated topic filters (MQTT topics may hold spaces; watched ones here may not)."""
    for topic_filter in value.split():
        validate_topic_filter(topic_filter)


class Broker(models.Model):
    """An MQTT broker the ingester subscribes to (MQTT 5, QoS 1, a persistent session)."""

    name = models.SlugField(max_length=64, unique=True)
    host = models.CharField(
        max_length=255,
        validators=[validate_host],
        help_text="a host name or IP address; loopback and private addresses only when "
        "INGESTION_ALLOWED_NETWORKS lists them",
    )
    port = models.PositiveIntegerField(
        default=0,
        validators=[MaxValueValidator(65535)],
        help_text="1-65535, or 0: 1883, or 8883 with TLS",
    )
    tls = models.BooleanField(default=False)
    ca_file = models.CharField(
        max_length=512,
        blank=True,
        validators=[validate_secret_path],
        help_text="TLS: the CA bundle that signs the broker's certificate, under INGESTION_SECRETS_DIR "
        "(empty: the system's CAs)",
    )
    client_cert_file = models.CharField(
        max_length=512,
        blank=True,
        validators=[validate_secret_path],
        help_text="TLS client certificate (PEM), under INGESTION_SECRETS_DIR",
    )
    client_key_file = models.CharField(
        max_length=512,
        blank=True,
        validators=[validate_secret_path],
        help_text="its private key (PEM), under INGESTION_SECRETS_DIR",
    )
    username = models.CharField(max_length=128, blank=True, validators=[validate_printable])
    # Write-only in the API and the admin, as the remote sources' secrets are.
    password = models.CharField(max_length=256, blank=True, validators=[validate_printable])
    client_id = models.CharField(
        max_length=64,
        blank=True,
        validators=[validate_printable],
        help_text="the session's name at the broker (empty: energy-dashboard-<name>); the broker "
        "keeps what arrives for it while the ingester is down",
    )
    watch_topics = models.CharField(
        max_length=1024,
        blank=True,
        validators=[validate_topic_filters],
        help_text="topic filters, space-separated, also subscribed (at QoS 0) to count the topics no "
        "mapping claims, with the last example (e.g. tele/# or #)",
    )
    enabled = models.BooleanField(default=True)
    # Messages whose topic no mapping claims: counted, the last one kept for an operator.
    unclaimed_count = models.PositiveBigIntegerField(default=0, editable=False)
    last_unclaimed = models.JSONField(default=dict, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    STATE_FIELDS = ("unclaimed_count", "last_unclaimed", "created_at", "updated_at")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def effective_port(self) -> int:
        """The port connected to."""
        return self.port or (8883 if self.tls else 1883)

    @property
    def effective_client_id(self) -> str:
        """The client id (the persistent session's name)."""
        return self.client_id or f"energy-dashboard-{self.name}"


class Mapping(models.Model):
    """How the messages of a topic filter become readings.

    The sensor is named by a topic level (`sensor_level`, 0 = the first) or a JSON field
    (`sensor_field`), slugified, between `sensor_prefix` and each field's `sensor_suffix`.
    `fields` lists what to read: ``{"path", "metric", "unit", "sensor_suffix"?}``; for JSON a
    dotted path into the object (``aenergy.total``), for plain numbers the text of the topic
    level `key_level` (``P1``), or ``""`` for any. The time is the JSON field `time_field`
    (ISO 8601, or epoch seconds; a time without offset is in `time_zone`), or, empty, the
    message's arrival.
    """

    class Preset(models.TextChoices):
        SHELLY_GEN2 = "shelly_gen2", "Shelly Gen2 switch (<id>/status/switch:0)"
        TASMOTA = "tasmota", "Tasmota (tele/<device>/SENSOR)"
        ZIGBEE2MQTT = "zigbee2mqtt", "zigbee2mqtt (zigbee2mqtt/<name>)"
        EMONHUB = "emonhub", "emonhub (emon/<node>/<key>, plain numbers)"
        JSON = "json", "a JSON object"
        NUMBER = "number", "a plain number"

    class Format(models.TextChoices):
        JSON = "json", "JSON object"
        NUMBER = "number", "plain number"

    broker = models.ForeignKey(Broker, on_delete=models.CASCADE, related_name="mappings")
    name = models.SlugField(max_length=64)
    enabled = models.BooleanField(default=True)
    topic = models.CharField(
        max_length=MAX_TOPIC_CHARS,
        validators=[validate_topic_filter],
        help_text="an MQTT topic filter, with + and #",
    )
    preset = models.CharField(
        max_length=16,
        choices=Preset.choices,
        default=Preset.JSON,
        help_text="what the fields below were filled from (blank fields take the preset's)",
    )
    payload_format = models.CharField(max_length=8, choices=Format.choices, default=Format.JSON)
    sensor_level = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=[MaxValueValidator(MAX_TOPIC_LEVEL)],
        help_text="the topic level (0 = first) that names the sensor",
    )
    sensor_field = models.CharField(
        max_length=128,
        blank=True,
        validators=[validate_printable],
        help_text="or the JSON field that names it (dotted path)",
    )
    sensor_prefix = models.CharField(
        max_length=32, blank=True, validators=[validate_printable], help_text="put before the name"
    )
    key_level = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=[MaxValueValidator(MAX_TOPIC_LEVEL)],
        help_text="plain numbers: the topic level whose text a field's path names",
    )
    fields = models.JSONField(
        default=list, blank=True, help_text='[{"path", "metric", "unit", "sensor_suffix"}]'
    )
    time_field = models.CharField(
        max_length=128,
        blank=True,
        validators=[validate_printable],
        help_text="the JSON field with the time (empty: the time of arrival)",
    )
    time_zone = models.CharField(
        max_length=64,
        blank=True,
        validators=[validate_time_zone],
        help_text="the zone of a time without offset (Tasmota's Time); empty: UTC",
    )
    register_unknown = models.BooleanField(
        default=False, help_text="register sensors not yet known (with no room), as meter files do"
    )
    priority = models.SmallIntegerField(
        default=0,
        validators=[MinValueValidator(-1000), MaxValueValidator(1000)],
        help_text="of two mappings claiming a topic, the higher takes it (then the more specific filter)",
    )
    # Bad input, counted, with the last example of each kind ({kind: {reason, topic, payload, at}}).
    messages_count = models.PositiveBigIntegerField(default=0, editable=False)
    readings_count = models.PositiveBigIntegerField(default=0, editable=False)
    malformed_count = models.PositiveBigIntegerField(default=0, editable=False)
    rejected_count = models.PositiveBigIntegerField(default=0, editable=False)
    unknown_sensor_count = models.PositiveBigIntegerField(default=0, editable=False)
    last_problems = models.JSONField(default=dict, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    STATE_FIELDS = (
        "messages_count",
        "readings_count",
        "malformed_count",
        "rejected_count",
        "unknown_sensor_count",
        "last_problems",
        "created_at",
        "updated_at",
    )

    class Meta:
        ordering = ["broker", "-priority", "name"]
        constraints = [
            models.UniqueConstraint(fields=["broker", "name"], name="mqtt_mapping_name_per_broker")
        ]

    def __str__(self) -> str:
        return f"{self.broker_id}/{self.name}"

    def clean(self) -> None:
        from ingestion.mqtt.payloads import check_fields

        super().clean()
        problem = check_fields(self.fields, self.payload_format)
        if problem:
            raise ValidationError({"fields": problem})
        if self.sensor_level is None and not self.sensor_field:
            raise ValidationError({"sensor_level": "name the sensor by a topic level or a JSON field"})
        if self.payload_format == self.Format.NUMBER and (self.sensor_field or self.time_field):
            raise ValidationError(
                {"sensor_field": "a plain number has no fields: name the sensor by a topic level"}
            )

    def as_dict(self) -> dict[str, Any]:
        """What the ingester needs of a mapping (read once per configuration change)."""
        return {
            "id": self.pk,
            "name": self.name,
            "topic": self.topic,
            "payload_format": self.payload_format,
            "sensor_level": self.sensor_level,
            "sensor_field": self.sensor_field,
            "sensor_prefix": self.sensor_prefix,
            "key_level": self.key_level,
            "fields": self.fields,
            "time_field": self.time_field,
            "time_zone": self.time_zone,
            "register_unknown": self.register_unknown,
            "priority": self.priority,
        }
