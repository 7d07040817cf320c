"""Request body parsers of the API (DEFAULT_PARSER_CLASSES). Its own module: the settings
import it while DRF's views load, so it must not import them (as the routers in api.py do).

Each parser reads at most DATA_UPLOAD_MAX_MEMORY_SIZE bytes of a body, as Django's own
`request.body` does: DRF hands parsers the raw stream, and the orjson parser read a viewer's
40 MB POST whole. Multipart bodies go through Django's upload handlers (files spool to disk;
DATA_UPLOAD_MAX_MEMORY_SIZE bounds the other fields).
"""

from __future__ import annotations

from typing import Any

import orjson
from django.conf import settings
from django.http import QueryDict
from django.utils.http import parse_header_parameters
from rest_framework import parsers, status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import BaseParser


class RequestTooLarge(APIException):
    """A request body past DATA_UPLOAD_MAX_MEMORY_SIZE (413)."""

    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"The request body is larger than DATA_UPLOAD_MAX_MEMORY_SIZE ({limit} bytes); "
            "send less per request."
        )


def read_bounded(stream: Any, parser_context: Any) -> bytes:
    """The body, refused with RequestTooLarge past DATA_UPLOAD_MAX_MEMORY_SIZE: on its
    Content-Length before anything is read, else (no or a wrong length, a chunked body) after
    reading at most one byte more than the limit."""
    if stream is None:
        return b""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if limit is None:  # Django's "no limit"
        return bytes(stream.read())
    request = (parser_context or {}).get("request")
    meta = getattr(request, "META", {})
    try:
        length = int(meta.get("CONTENT_LENGTH") or 0)
    except (TypeError, ValueError):
        length = 0  # unknown: the bounded read below decides
    if length > limit:
        raise RequestTooLarge(limit)
    body = bytes(stream.read(limit + 1))
    if len(body) > limit:
        raise RequestTooLarge(limit)
    return body


class JSONParser(BaseParser):
    """Request bodies parsed by orjson: a batch of 5,000 readings parses in about a quarter of
    the stdlib's time (bench/ingest_api.py). Like DRF's strict parser it refuses NaN and
    Infinity, which are not JSON, and numbers that overflow to them; also invalid UTF-8.
    At most DATA_UPLOAD_MAX_MEMORY_SIZE bytes are read (`read_bounded`)."""

    media_type = "application/json"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        body = read_bounded(stream, parser_context)
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise ParseError(f"JSON parse error - {exc}") from exc


class FormParser(BaseParser):
    """Form bodies as DRF's FormParser parses them, reading at most DATA_UPLOAD_MAX_MEMORY_SIZE
    bytes (`read_bounded`) and refusing more with the same 413 as JSON. (Not a subclass: DRF
    gives its own parser `request.body`, whose limit answers a bare 400.) QueryDict bounds the
    number of fields (DATA_UPLOAD_MAX_NUMBER_FIELDS)."""

    media_type = "application/x-www-form-urlencoded"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> QueryDict:
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        return QueryDict(read_bounded(stream, parser_context), encoding=encoding)


class MultiPartParser(parsers.MultiPartParser):
    """DRF's multipart parser, refusing a body whose parts are none of them a named field or
    file: Django drops a part without `Content-Disposition: form-data; name=...`, and a body of
    such parts went on as an empty form (a PATCH of nothing answered 200). An empty form, the
    closing boundary alone, is still read as one."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        result = super().parse(stream, media_type, parser_context)
        if result.data or result.files:
            return result
        request = (parser_context or {}).get("request")
        try:
            length = int(getattr(request, "META", {}).get("CONTENT_LENGTH") or 0)
        except (TypeError, ValueError):
            length = 0
        boundary = parse_header_parameters(media_type or "")[1].get("boundary", "")
        # "--" boundary "--" and a line end: an empty form.
        if length > len(boundary) + 8:
            raise ParseError(
                "Multipart form parse error - no part is a named field or file "
                '(each needs Content-Disposition: form-data; name="...").'
            )
        return result
