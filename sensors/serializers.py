"""API shapes of rooms and sensors."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils import timezone
from rest_framework import serializers

from sensors.models import Metric, Room, Sensor, validate_metadata


class MetadataField(serializers.JSONField):
    """A sensor's metadata: bounded (sensors.models.validate_metadata) before anything walks
    it; DRF's own check serialises it recursively, which a value 1,000 levels deep overflows."""

    def to_internal_value(self, data: Any) -> Any:
        try:
            validate_metadata(data)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from None
        return super().to_internal_value(data)


class RoomSerializer(serializers.ModelSerializer[Room]):
    """A room; `name` is its key in URLs."""

    sensor_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Room
        fields = [
            "name",
            "display_name",
            "floor",
            "area_m2",
            "capacity",
            "sensor_count",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]


class SensorSerializer(serializers.ModelSerializer[Sensor]):
    """A sensor; `sensor_id` is its key in URLs, `room` the room's name."""

    room = serializers.SlugRelatedField(
        slug_field="name", queryset=Room.objects.all(), allow_null=True, required=False
    )
    metadata = MetadataField(required=False)

    class Meta:
        model = Sensor
        fields = [
            "sensor_id",
            "name",
            "kind",
            "room",
            "external_id",
            "status",
            "last_seen",
            "expected_interval_s",
            "metadata",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["last_seen", "created_at", "updated_at"]

    def validate_sensor_id(self, value: str) -> str:
        if self.instance is not None and value != self.instance.sensor_id:
            raise serializers.ValidationError("sensor_id is the sensor's key and cannot change.")
        return value


class SeriesQuery(serializers.Serializer[Any]):
    """Query parameters of GET /sensors/{sensor_id}/data."""

    metric = serializers.ChoiceField(choices=Metric.choices, required=False)
    start = serializers.DateTimeField(required=False, help_text="Default: end - 24 h. Naive = building time.")
    end = serializers.DateTimeField(required=False, help_text="Default: now.")
    resolution = serializers.ChoiceField(choices=["raw", "15m", "1h", "1d"], default="raw")
    limit = serializers.IntegerField(min_value=1, max_value=10_000, default=1000)
    cursor = serializers.DateTimeField(required=False, help_text="Return points after this instant.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs.setdefault("end", timezone.now())
        attrs.setdefault("start", attrs["end"] - timedelta(days=1))
        if attrs["start"] >= attrs["end"]:
            raise serializers.ValidationError({"start": "start must be before end."})
        return attrs


class ReadingsBatch(serializers.Serializer[Any]):
    """Body of POST /readings and POST /sensors/{sensor_id}/data: the items are checked one by
    one by readings_ingest, so one bad item never refuses the rest."""

    readings = serializers.ListField(child=serializers.JSONField(), max_length=10_000, allow_empty=False)


class IngestSummary(serializers.Serializer[Any]):
    """What happened to a batch."""

    accepted = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    conflicts = serializers.IntegerField()
    rejected = serializers.ListField(child=serializers.DictField())


class EnergyQuery(serializers.Serializer[Any]):
    """Query parameters of GET /analytics/energy."""

    rooms = serializers.CharField(required=False, help_text="Comma-separated room names.")
    sensors = serializers.CharField(required=False, help_text="Comma-separated sensor ids.")
    start = serializers.DateTimeField(required=False, help_text="Default: local midnight 7 days ago.")
    end = serializers.DateTimeField(required=False, help_text="Default: now.")
    interval = serializers.ChoiceField(choices=["15m", "1h", "1d", "1w", "1M"], default="1h")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs["rooms"] = [r for r in attrs.get("rooms", "").split(",") if r]
        attrs["sensors"] = [s for s in attrs.get("sensors", "").split(",") if s]
        if not attrs["rooms"] and not attrs["sensors"]:
            raise serializers.ValidationError({"rooms": "name rooms or sensors (comma-separated)."})
        attrs.setdefault("end", timezone.now())
        attrs.setdefault("start", attrs["end"] - timedelta(days=7))
        if attrs["start"] >= attrs["end"]:
            raise serializers.ValidationError({"start": "start must be before end."})
        return attrs


class DataQuery(serializers.Serializer[Any]):
    """Body of POST /data/query."""

    sensors = serializers.ListField(child=serializers.CharField(), required=False, default=list)
    rooms = serializers.ListField(child=serializers.CharField(), required=False, default=list)
    metrics = serializers.ListField(
        child=serializers.ChoiceField(choices=Metric.choices), required=False, default=list
    )
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    aggregation = serializers.ChoiceField(choices=["raw", "avg", "sum", "min", "max", "count"], default="raw")
    interval = serializers.ChoiceField(choices=["15m", "1h", "1d"], default="1h")
    limit = serializers.IntegerField(min_value=1, max_value=100_000, default=10_000)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs["sensors"] and not attrs["rooms"]:
            raise serializers.ValidationError({"sensors": "name sensors or rooms."})
        if attrs["start"] >= attrs["end"]:
            raise serializers.ValidationError({"start": "start must be before end."})
        return attrs
