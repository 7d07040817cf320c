"""One FilterSet per model, shared by the API and the admin."""

from __future__ import annotations

import django_filters

from ingestion.models import IngestedFile


class IngestedFileFilter(django_filters.FilterSet):
    """Files by status, source name, origin, and when they were found (`since`, `until`)."""

    status = django_filters.MultipleChoiceFilter(choices=IngestedFile.Status.choices)
    source = django_filters.CharFilter(field_name="source__name")
    origin = django_filters.ChoiceFilter(choices=IngestedFile.Origin.choices)
    since = django_filters.IsoDateTimeFilter(field_name="discovered_at", lookup_expr="gte")
    until = django_filters.IsoDateTimeFilter(field_name="discovered_at", lookup_expr="lt")
    name = django_filters.CharFilter(field_name="name", lookup_expr="icontains")
    sha256 = django_filters.CharFilter(field_name="sha256")

    class Meta:
        model = IngestedFile
        fields = ["status", "source", "origin", "since", "until", "name", "sha256"]
