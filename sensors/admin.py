"""Admin for operators: rooms, sensors (filters, search, room assignment, bulk status), and
read-only readings and aggregates that never count the whole table."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.forms.fields import InvalidJSONInput
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.functional import cached_property

from energy_dashboard.core.admin_site import AdminSite
from sensors import services
from sensors.models import METADATA_MAX_DEPTH, Metric, Reading, Rollup, Room, RoomMetrics, Sensor


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    """Rooms by name."""

    list_display = ["name", "display_name", "floor", "area_m2", "capacity"]
    search_fields = ["name", "display_name"]
    list_filter = ["floor"]


class MetadataFormField(forms.JSONField):
    """The metadata box: JSON nested too deep for the parser is refused like any too-deep value
    (the model's validator bounds the rest), not a 500."""

    def to_python(self, value: Any) -> Any:
        try:
            return super().to_python(value)
        except RecursionError:
            raise forms.ValidationError(
                f"metadata may nest at most {METADATA_MAX_DEPTH} levels deep.", code="too_deep"
            ) from None

    def bound_data(self, data: Any, initial: Any) -> Any:
        # The form shown again with its errors parses what was sent a second time.
        try:
            return super().bound_data(data, initial)
        except RecursionError:
            return InvalidJSONInput(data)


class SensorAdminForm(forms.ModelForm):
    """The sensor form, with a metadata box that survives any nesting."""

    metadata = MetadataFormField(required=False, initial=dict)

    class Meta:
        model = Sensor
        fields = [
            "sensor_id",
            "name",
            "kind",
            "room",
            "part_of",
            "external_id",
            "status",
            "expected_interval_s",
            "metadata",
        ]


@admin.register(Sensor)
class SensorAdmin(admin.ModelAdmin):
    """The registry: assign rooms in the list, change status in bulk."""

    form = SensorAdminForm
    list_display = ["sensor_id", "name", "kind", "room", "part_of", "status", "last_seen", "external_id"]
    list_editable = ["room"]
    # A search box, not a select of every sensor: a registry holds thousands. The model's
    # clean() refuses another kind, a cycle or a hierarchy too deep (validate_part_of).
    autocomplete_fields = ["part_of"]
    list_filter = ["kind", "status", "room", ("room", admin.EmptyFieldListFilter)]
    search_fields = ["sensor_id", "name", "external_id"]
    list_select_related = ["room", "part_of"]
    readonly_fields = ["last_seen", "created_at", "updated_at"]
    actions = ["mark_active", "mark_inactive", "clear_room"]

    def save_model(self, request: HttpRequest, obj: Sensor, form: Any, change: bool) -> None:
        # Through the service, so the bus (and the live feed) hears of every change.
        if change:
            changes = {
                field: getattr(obj, field) for field in form.changed_data if field not in ("room", "part_of")
            }
            if "room" in form.changed_data:
                changes["room_name"] = obj.room.name if obj.room else None
            if "part_of" in form.changed_data:
                changes["part_of"] = obj.part_of.sensor_id if obj.part_of else None
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
                part_of=obj.part_of.sensor_id if obj.part_of else None,
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


# --- Readings: a page, not a ModelAdmin ----------------------------------------------------
# Django 5.2's admin cannot register a model with a composite primary key (ADR 0008), so the
# raw readings get a read-only page of their own at the same URL (/admin/sensors/reading/).
# It never counts: it shows a time window (the last hour unless asked), newest first, and
# pages by "older" links.

READINGS_PER_PAGE = 100
WINDOWS = {"1h": timedelta(hours=1), "24h": timedelta(days=1), "7d": timedelta(days=7), "all": None}


class ReadingFilterForm(forms.Form):
    """The page's filters; every field is optional."""

    sensor = forms.CharField(required=False, label="Sensor id", max_length=64)
    metric = forms.ChoiceField(required=False, choices=[("", "All metrics"), *Metric.choices])
    quality = forms.ChoiceField(
        required=False, choices=[("", "Any quality"), ("measured", "Measured"), ("estimated", "Estimated")]
    )
    window = forms.ChoiceField(
        required=False,
        choices=[("1h", "Last hour"), ("24h", "Last 24 hours"), ("7d", "Last 7 days"), ("all", "All time")],
    )
    p = forms.IntegerField(required=False, min_value=1, max_value=10_000, widget=forms.HiddenInput)


def readings_page(request: HttpRequest) -> HttpResponse:
    """Raw readings, newest first, by sensor id, metric, quality and time window."""
    if not request.user.has_perm("sensors.view_reading"):
        raise PermissionDenied
    form = ReadingFilterForm(request.GET)
    wanted = form.cleaned_data if form.is_valid() else {}
    queryset = Reading.objects.all()
    if wanted.get("sensor"):
        queryset = queryset.filter(sensor__sensor_id=wanted["sensor"])
    if wanted.get("metric"):
        queryset = queryset.filter(metric=wanted["metric"])
    if wanted.get("quality"):
        queryset = queryset.filter(estimated=wanted["quality"] == "estimated")
    window = WINDOWS[wanted.get("window") or "1h"]
    if window is not None:
        queryset = queryset.filter(timestamp__gte=timezone.now() - window)
    page = wanted.get("p") or 1
    offset = (page - 1) * READINGS_PER_PAGE
    # One row more than a page tells whether an older page exists, without a COUNT.
    rows = list(
        queryset.order_by("-timestamp", "sensor_id", "metric").values_list(
            "timestamp", "sensor_id", "sensor__sensor_id", "metric", "value", "estimated"
        )[offset : offset + READINGS_PER_PAGE + 1]
    )

    def page_url(number: int) -> str:
        query = request.GET.copy()
        query["p"] = str(number)
        return f"?{query.urlencode()}"

    context = {
        **admin.site.each_context(request),
        "title": "Readings",
        "opts": Reading._meta,
        "form": form,
        "rows": [
            {
                "timestamp": timestamp,
                "sensor_url": reverse("admin:sensors_sensor_change", args=[sensor_pk]),
                "sensor_id": sensor_id,
                "metric": Metric(metric).label,
                "value": value,
                "quality": "estimated" if estimated else "measured",
            }
            for timestamp, sensor_pk, sensor_id, metric, value, estimated in rows[:READINGS_PER_PAGE]
        ],
        "page": page,
        "newer_url": page_url(page - 1) if page > 1 else None,
        "older_url": page_url(page + 1) if len(rows) > READINGS_PER_PAGE else None,
    }
    return TemplateResponse(request, "admin/sensors/readings.html", context)


# admin.site is the project's site (INSTALLED_APPS names energy_dashboard.core.admin_site.AdminConfig).
cast(AdminSite, admin.site).register_page(Reading, readings_page)


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
