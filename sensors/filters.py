"""One FilterSet per model, shared by the API and the admin."""

from __future__ import annotations

import django_filters
from django.db.models import Q, QuerySet

from sensors.models import Room, Sensor


class SensorFilter(django_filters.FilterSet):
    """Sensors by room name, kind, status, or a search over id, name and external id."""

    room = django_filters.CharFilter(field_name="room__name")
    unassigned = django_filters.BooleanFilter(field_name="room", lookup_expr="isnull")
    kind = django_filters.MultipleChoiceFilter(choices=Sensor.Kind.choices)
    status = django_filters.MultipleChoiceFilter(choices=Sensor.Status.choices)
    search = django_filters.CharFilter(method="filter_search")

    class Meta:
        model = Sensor
        fields = ["room", "unassigned", "kind", "status", "search"]

    def filter_search(self, queryset: QuerySet[Sensor], name: str, value: str) -> QuerySet[Sensor]:
        return queryset.filter(
            Q(sensor_id__icontains=value) | Q(name__icontains=value) | Q(external_id__icontains=value)
        )


class RoomFilter(django_filters.FilterSet):
    """Rooms by floor or a search over name and display name."""

    search = django_filters.CharFilter(method="filter_search")

    class Meta:
        model = Room
        fields = ["floor", "search"]

    def filter_search(self, queryset: QuerySet[Room], name: str, value: str) -> QuerySet[Room]:
        return queryset.filter(Q(name__icontains=value) | Q(display_name__icontains=value))
