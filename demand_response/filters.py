"""One FilterSet per model, shared by the API and the admin."""

from __future__ import annotations

import django_filters
from django.db.models import Q, QuerySet

from demand_response.models import DREvent, FlexibleDevice, Invitation


class FlexibleDeviceFilter(django_filters.FilterSet):
    """Devices by category, room, enabled, sensor, or a search over name and sensor."""

    category = django_filters.MultipleChoiceFilter(choices=FlexibleDevice.Category.choices)
    search = django_filters.CharFilter(method="filter_search")

    class Meta:
        model = FlexibleDevice
        fields = ["category", "room", "enabled", "sensor_id", "search"]

    def filter_search(
        self, queryset: QuerySet[FlexibleDevice], name: str, value: str
    ) -> QuerySet[FlexibleDevice]:
        return queryset.filter(Q(name__icontains=value) | Q(sensor_id__icontains=value))


class InvitationFilter(django_filters.FilterSet):
    """Invitations by status, source, programme, or starting in a range."""

    status = django_filters.MultipleChoiceFilter(choices=Invitation.Status.choices)
    start_after = django_filters.IsoDateTimeFilter(field_name="start", lookup_expr="gte")
    start_before = django_filters.IsoDateTimeFilter(field_name="start", lookup_expr="lt")

    class Meta:
        model = Invitation
        fields = ["status", "source", "external_id", "programme", "start_after", "start_before"]


class DREventFilter(django_filters.FilterSet):
    """Events by status, programme, or starting in a range."""

    status = django_filters.MultipleChoiceFilter(choices=DREvent.Status.choices)
    start_after = django_filters.IsoDateTimeFilter(field_name="start", lookup_expr="gte")
    start_before = django_filters.IsoDateTimeFilter(field_name="start", lookup_expr="lt")

    class Meta:
        model = DREvent
        fields = ["status", "programme", "start_after", "start_before"]
