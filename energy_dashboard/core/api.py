"""Pieces every module's API shares."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, TypeVar

import django_filters
from django.db import models
from django.db.models import QuerySet
from django.http import QueryDict, StreamingHttpResponse
from django.utils import timezone
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework import pagination, serializers
from rest_framework.exceptions import ValidationError
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.routers import SimpleRouter

from energy_dashboard.core.clock import building_tz, iso_z

# Bounds of every list's page (README, "Limits"): `?limit=100000000000000000000` answered a
# page of everything, `-1` or `abc` were silently ignored, and a huge offset left bigint's range.
MAX_LIMIT = 1_000
MAX_OFFSET = 10_000_000


class UTCDateTimeField(serializers.DateTimeField):
    """DRF's DateTimeField, written as UTC ending in Z like every other instant the API gives
    (energy_dashboard/core/clock.py). DRF wrote it in the building's zone: +01:00 in summer, and
    before 1912 Lisbon's local mean time, `-00:36:45`, an offset in seconds that RFC 3339 (the
    schema's `date-time`) has no form for. Input is read as DRF reads it (naive = building time).
    """

    # None for no value, as DRF's own DateTimeField gives (its stubs say str).
    def to_representation(self, value: datetime | str | None) -> str | None:  # type: ignore[override]
        if not value:
            return None
        if isinstance(value, str):
            return value
        if timezone.is_naive(value):
            value = timezone.make_aware(value, building_tz())
        return iso_z(value)


class StrictCharField(serializers.CharField):
    """A text field that takes text only: DRF's CharField turns a JSON number into its digits
    (`{"name": 0}` made a device named "0"), where the schema says `string`."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictSlugField(serializers.SlugField):
    """A slug that takes text only (see StrictCharField)."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class NumberDecimalField(serializers.DecimalField):
    """A decimal that is a JSON number both ways. DRF wrote it as a string ("12.50") and read a
    number or a string, while the schema said string only: `{"area_m2": 0}` was a schema
    violation the API accepted. A form's values are all text, so there a string is read."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("coerce_to_string", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> Any:
        in_form = isinstance(getattr(self.root, "initial_data", None), QueryDict)
        if isinstance(data, str | bool) and not in_form:
            self.fail("invalid")
        return super().to_internal_value(data)


_M = TypeVar("_M", bound=models.Model)


class ModelSerializer(serializers.ModelSerializer[_M]):
    """DRF's ModelSerializer with the model's instants as UTCDateTimeField, its text fields
    taking text only (StrictCharField) and its decimals as numbers (NumberDecimalField)."""

    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.DateTimeField: UTCDateTimeField,
        models.CharField: StrictCharField,
        models.TextField: StrictCharField,
        models.SlugField: StrictSlugField,
        models.DecimalField: NumberDecimalField,
    }


class OptionalSlashRouter(SimpleRouter):
    """The seed's paths have no trailing slash (`/sensors/{id}`); accept both forms."""

    def __init__(self) -> None:
        super().__init__()
        self.trailing_slash = "/?"


class CSVRenderer(BaseRenderer):
    """Lets content negotiation accept `?format=csv`; views that offer CSV stream it themselves
    (`csv_response`), so a large export never sits in memory."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(
        self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None
    ) -> bytes:
        # Reached only for errors raised before the view could stream: show them as text.
        if isinstance(data, dict) and "message" in data:
            return f"error,{data['message']}\n".encode()
        return b""


def csv_response(
    filename: str, header: Sequence[str], rows: Iterable[Sequence[Any]]
) -> StreamingHttpResponse:
    """Stream rows as CSV, one chunk per row group."""

    def chunks() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(header)
        for count, row in enumerate(rows, start=1):
            writer.writerow(row)
            if count % 500 == 0:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    response = StreamingHttpResponse(chunks(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


class LimitOffsetPagination(pagination.LimitOffsetPagination):
    """DRF's limit/offset pages (PAGE_SIZE by default), with `limit` 1..MAX_LIMIT and `offset`
    0..MAX_OFFSET: any other value (negative, not a number, too large) is a 400 naming it,
    where DRF silently took the default or capped it."""

    max_limit = MAX_LIMIT

    def get_limit(self, request: Request) -> int | None:
        raw = request.query_params.get(self.limit_query_param)
        if raw is None:
            return self.default_limit
        return _bounded(self.limit_query_param, raw, 1, MAX_LIMIT)

    def get_offset(self, request: Request) -> int:
        raw = request.query_params.get(self.offset_query_param)
        return 0 if raw is None else _bounded(self.offset_query_param, raw, 0, MAX_OFFSET)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        bounds = {self.limit_query_param: (1, MAX_LIMIT), self.offset_query_param: (0, MAX_OFFSET)}
        for parameter in parameters:
            if parameter["name"] in bounds:
                low, high = bounds[parameter["name"]]
                parameter["schema"] = {**parameter["schema"], "minimum": low, "maximum": high}
        return parameters


def _bounded(name: str, raw: str, low: int, high: int) -> int:
    # Digits only, and few of them: int() of a long digit string costs quadratic time.
    text = raw.strip()
    value = int(text) if text.isdigit() and len(text) <= 12 else None
    if value is None or not low <= value <= high:
        raise ValidationError({name: [f"{name} must be a whole number from {low} to {high}."]})
    return value


# A query parameter given empty (`?start=`) or a boolean that is neither true nor false
# (`?unassigned=maybe`) was silently taken as absent: a client's mistake answered as if it had
# asked for the default. Both are a 400 naming the parameter.
EMPTY = "may not be empty: leave the parameter out for its default."
NOT_BOOLEAN = "must be true or false."
# What django-filter's boolean widget reads (JavaScript's and Python's spellings); it takes
# anything else as absent.
BOOLEANS = frozenset({"true", "false", "True", "False"})


class StrictFilterBackend(DjangoFilterBackend):
    """django-filter's backend, refusing an empty value of any filter that is not free text and
    a boolean filter's value other than true / false (BOOLEANS)."""

    # DRF hands a filter backend its Request (django-filter's stubs say HttpRequest).
    def filter_queryset(self, request: Request, queryset: QuerySet[Any], view: Any) -> QuerySet[Any]:  # type: ignore[override]
        filterset_class = self.get_filterset_class(view, queryset)
        if filterset_class is not None:
            errors: dict[str, list[str]] = {}
            for name, declared in filterset_class.base_filters.items():
                for value in request.query_params.getlist(name):
                    if isinstance(declared, django_filters.BooleanFilter):
                        if value not in BOOLEANS:
                            errors[name] = [f"{name} {NOT_BOOLEAN}"]
                    elif value == "" and type(declared) is not django_filters.CharFilter:
                        errors[name] = [f"{name} {EMPTY}"]
            if errors:
                raise ValidationError(errors)
        return super().filter_queryset(request, queryset, view)


class QuerySerializer(serializers.Serializer[Any]):
    """A serializer of query parameters that refuses an empty value of any of them but free text
    that may be blank (DRF takes `?start=` of an optional field as absent)."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, QueryDict):
            errors = {
                name: [f"{name} {EMPTY}"]
                for name, field in self.fields.items()
                if "" in data.getlist(name) and not getattr(field, "allow_blank", False)
            }
            if errors:
                raise ValidationError(errors)
        return super().to_internal_value(data)
