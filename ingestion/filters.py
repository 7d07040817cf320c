"""One FilterSet per model, shared by the API and the admin."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import django_filters
from django import forms
from django_filters.fields import IsoDateTimeField

from energy_dashboard.core import limits
from ingestion.models import IngestedFile


class HorizonDateTimeField(IsoDateTimeField):
    """An ISO 8601 instant within the product's horizon (energy_dashboard/core/limits.py): year 1
    at +14:00 or 9999 at -12:00 cannot even be turned into UTC."""

    def clean(self, value: Any) -> datetime | None:
        moment: datetime | None = super().clean(value)
        if moment is not None and not limits.within_horizon(moment):
            raise forms.ValidationError(
                f"between {limits.EARLIEST:%Y-%m-%d} and {limits.LATEST:%Y-%m-%d}", code="horizon"
            )
        return moment


class HorizonDateTimeFilter(django_filters.IsoDateTimeFilter):
    """IsoDateTimeFilter bounded to the product's horizon."""

    field_class = HorizonDateTimeField


class IngestedFileFilter(django_filters.FilterSet):
    """Files by status, source name, origin, and when they were found (`since`, `until`)."""

    status = django_filters.MultipleChoiceFilter(choices=IngestedFile.Status.choices)
    source = django_filters.CharFilter(field_name="source__name")
    origin = django_filters.ChoiceFilter(choices=IngestedFile.Origin.choices)
    since = HorizonDateTimeFilter(field_name="discovered_at", lookup_expr="gte")
    until = HorizonDateTimeFilter(field_name="discovered_at", lookup_expr="lt")
    name = django_filters.CharFilter(field_name="name", lookup_expr="icontains")
    sha256 = django_filters.CharFilter(field_name="sha256")

    class Meta:
        model = IngestedFile
        fields = ["status", "source", "origin", "since", "until", "name", "sha256"]
