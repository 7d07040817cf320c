"""Admin for operators: rooms, sensors (filters, search, room assignment, bulk status), and
read-only readings and aggregates that never count the whole table."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.functional import cached_property

from sensors import services
from sensors.models import Reading, Rollup, Room, RoomMetrics, Sensor


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    """Rooms by name."""

    list_display = ["name", "display_name", "floor", "area_m2", "capacity"]
    search_fields = ["name", "display_name"]
    list_filter = ["floor"]


@admin.register(Sensor)
class SensorAdmin(admin.ModelAdmin):
    """The registry: assign rooms in the list, change status in bulk."""

    list_display = ["sensor_id", "name", "kind", "room", "status", "last_seen", "external_id"]
    list_editable = ["room"]
    list_filter = ["kind", "status", "room", ("room", admin.EmptyFieldListFilter)]
    search_fields = ["sensor_id", "name", "external_id"]
    list_select_related = ["room"]
    readonly_fields = ["last_seen", "created_at", "updated_at"]
    actions = ["mark_active", "mark_inactive", "clear_room"]

    def save_model(self, request: HttpRequest, obj: Sensor, form: Any, change: bool) -> None:
        # Through the service, so the bus (and the live feed) hears of every change.
        if change:
            changes = {field: getattr(obj, field) for field in form.changed_data if field != "room"}
            if "room" in form.changed_data:
                changes["room_name"] = obj.room.name if obj.room else None
            services.sensor_update(sensor=Sensor.objects.get(pk=obj.pk), **changes)
        else:
            services.sensor_register(
                sensor_id=obj.sensor_id,
                kind=obj.kind,
                name=obj.name,
                room_name=obj.room.name if obj.room else None,
                external_id=obj.external_id,
                expected_interval_s=obj.expected_interval_s,
                metadata=obj.metadata,
                status=obj.status,
            )

    def delete_model(self, request: HttpRequest, obj: Sensor) -> None:
        services.sensor_delete(sensor=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Sensor]) -> None:
        # "Delete selected" too goes through the service: its lock keeps ingests from leaving
        # readings of a deleted sensor, and the bus hears of each deletion.
        for sensor in queryset:
            services.sensor_delete(sensor=sensor)

    def _bulk(self, request: HttpRequest, queryset: QuerySet[Sensor], **changes: Any) -> None:
        for sensor in queryset:
            services.sensor_update(sensor=sensor, **changes)
        self.message_user(request, f"{queryset.count()} sensor(s) updated.", messages.SUCCESS)

    @admin.action(description="Mark selected sensors active", permissions=["change"])
    def mark_active(self, request: HttpRequest, queryset: QuerySet[Sensor]) -> None:
        self._bulk(request, queryset, status=Sensor.Status.ACTIVE)

    @admin.action(description="Mark selected sensors inactive", permissions=["change"])
    def mark_inactive(self, request: HttpRequest, queryset: QuerySet[Sensor]) -> None:
        self._bulk(request, queryset, status=Sensor.Status.INACTIVE)

    @admin.action(description="Remove selected sensors from their room", permissions=["change"])
    def clear_room(self, request: HttpRequest, queryset: QuerySet[Sensor]) -> None:
        self._bulk(request, queryset, room_name=None)


class NoCountPaginator(Paginator):
    """Pages without COUNT(*): the readings table has millions of rows."""

    @cached_property
    def count(self) -> int:
        return 10**9  # large enough for "next" links; the admin shows no total


class ReadOnlyAdmin(admin.ModelAdmin):
    """Stored data is written by the services only."""

    show_full_result_count = False
    paginator = NoCountPaginator
    list_per_page = 100

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Reading)
class ReadingAdmin(ReadOnlyAdmin):
    """Raw readings, newest first, filtered by metric or a sensor id."""

    list_display = ["timestamp", "sensor", "metric", "value", "estimated"]
    list_filter = ["metric", "estimated"]
    search_fields = ["=sensor__sensor_id"]
    list_select_related = ["sensor"]
    ordering = ["-timestamp"]
    date_hierarchy = None


@admin.register(Rollup)
class RollupAdmin(ReadOnlyAdmin):
    """Rollups per sensor and metric."""

    list_display = ["bucket", "sensor", "metric", "resolution", "count", "sum", "mean", "min", "max"]
    list_filter = ["resolution", "metric"]
    search_fields = ["=sensor__sensor_id"]
    list_select_related = ["sensor"]
    ordering = ["-bucket"]


@admin.register(RoomMetrics)
class RoomMetricsAdmin(ReadOnlyAdmin):
    """5-minute room figures."""

    list_display = [
        "bucket",
        "room",
        "energy_kwh",
        "power_w",
        "co2_ppm",
        "temperature_c",
        "humidity_pct",
        "sensors_reporting",
    ]
    list_filter = ["room"]
    list_select_related = ["room"]
    ordering = ["-bucket"]
