"""Request body parsers of the API (DEFAULT_PARSER_CLASSES). Its own module: the settings
import it while DRF's views load, so it must not import them (as the routers in api.py do)."""

from __future__ import annotations

from typing import Any

import orjson
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser


class JSONParser(BaseParser):
    """Request bodies parsed by orjson: a batch of 5,000 readings parses in about a quarter of
    the stdlib's time (bench/ingest_api.py). Like DRF's strict parser it refuses NaN and
    Infinity, which are not JSON, and numbers that overflow to them; also invalid UTF-8."""

    media_type = "application/json"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            return orjson.loads(stream.read() if stream is not None else b"")
        except orjson.JSONDecodeError as exc:
            raise ParseError(f"JSON parse error - {exc}") from exc
