"""Pieces every module's API shares."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from django.http import StreamingHttpResponse
from rest_framework import pagination
from rest_framework.exceptions import ValidationError
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.routers import SimpleRouter

# Bounds of every list's page (README, "Limits"): `?limit=100000000000000000000` answered a
# page of everything, `-1` or `abc` were silently ignored, and a huge offset left bigint's range.
MAX_LIMIT = 1_000
MAX_OFFSET = 10_000_000


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
