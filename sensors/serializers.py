"""API shapes of rooms and sensors."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from sensors.models import Room, Sensor


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

    def validate_metadata(self, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise serializers.ValidationError("metadata must be a JSON object.")
        return value

    def validate_sensor_id(self, value: str) -> str:
        if self.instance is not None and value != self.instance.sensor_id:
            raise serializers.ValidationError("sensor_id is the sensor's key and cannot change.")
        return value
