"""Pieces every module's API shares."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from django.http import StreamingHttpResponse
from rest_framework.renderers import BaseRenderer
from rest_framework.routers import SimpleRouter


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
