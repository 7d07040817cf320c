"""Sensors and rooms API: declarative viewsets; writes go through sensors.services."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import serializers as drf_serializers
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from sensors import services
from sensors.filters import RoomFilter, SensorFilter
from sensors.models import Room, Sensor
from sensors.serializers import RoomSerializer, SensorSerializer


def _room_name(data: dict[str, Any]) -> dict[str, Any]:
    if "room" in data:
        room = data.pop("room")
        data["room_name"] = room.name if room else None
    return data


class SensorViewSet(viewsets.ModelViewSet[Sensor]):
    """The sensor registry; `/sensors/get` is the seed's alias of the list."""

    queryset = Sensor.objects.select_related("room")
    serializer_class = SensorSerializer
    filterset_class = SensorFilter
    lookup_field = "sensor_id"
    lookup_value_regex = r"[-a-zA-Z0-9_]+"

    def perform_create(self, serializer: SensorSerializer) -> None:  # type: ignore[override]
        data = _room_name(dict(serializer.validated_data))
        serializer.instance = services.sensor_register(**data)

    def perform_update(self, serializer: SensorSerializer) -> None:  # type: ignore[override]
        data = _room_name(dict(serializer.validated_data))
        serializer.instance = services.sensor_update(sensor=serializer.instance, **data)

    def perform_destroy(self, instance: Sensor) -> None:
        services.sensor_delete(sensor=instance)

    @extend_schema(operation_id="sensors_get_alias", responses=SensorSerializer(many=True))
    @action(detail=False, methods=["get"], url_path="get")
    def get_alias(self, request: Request) -> Response:
        """The seed's `GET /sensors/get`: the same list, with the same filters."""
        return self.list(request)


class RoomViewSet(viewsets.ModelViewSet[Room]):
    """Rooms by name."""

    serializer_class = RoomSerializer
    filterset_class = RoomFilter
    lookup_field = "name"
    lookup_value_regex = r"[-a-zA-Z0-9_]+"

    def get_queryset(self) -> QuerySet[Room]:
        return Room.objects.annotate(sensor_count=Count("sensors"))

    def perform_create(self, serializer: RoomSerializer) -> None:  # type: ignore[override]
        room = services.room_create(**serializer.validated_data)
        serializer.instance = self.get_queryset().get(pk=room.pk)

    def perform_update(self, serializer: RoomSerializer) -> None:  # type: ignore[override]
        services.room_update(room=serializer.instance, **serializer.validated_data)

    def perform_destroy(self, instance: Room) -> None:
        services.room_delete(room=instance)

    @extend_schema(responses=drf_serializers.ListSerializer(child=drf_serializers.CharField()))
    @action(detail=False, methods=["get"])
    def names(self, request: Request) -> Response:
        """Every room's name."""
        return Response(services.room_names())
