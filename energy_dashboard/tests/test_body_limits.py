"""Every body parser of the API enforces DATA_UPLOAD_MAX_MEMORY_SIZE and reads at most one
byte past it."""

from __future__ import annotations

import io
from typing import Any

import pytest
from rest_framework.test import APIClient, APIRequestFactory

from energy_dashboard.core.parsers import FormParser, JSONParser, RequestTooLarge

pytestmark = pytest.mark.django_db(databases="__all__")


class CountingStream(io.BytesIO):
    """A request body that counts the bytes read from it."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.taken = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.taken += len(chunk)
        return chunk

    def readline(self, size: int | None = -1) -> bytes:  # Django's LimitedStream may call it
        chunk = super().readline(size)
        self.taken += len(chunk)
        return chunk


def query_body(size: int) -> bytes:
    """A valid /data/query body of exactly `size` bytes (padded with a field it ignores)."""
    head = b'{"sensors": ["p1"], "start": "2026-11-02T10:00:00Z", "end": "2026-11-02T11:00:00Z", "pad": "'
    return head + b"x" * (size - len(head) - 2) + b'"}'


def post(api: APIClient, body: bytes, content_type: str = "application/json", **environ: Any) -> Any:
    # Bytes, as DRF's APIClient.generic takes (its stubs say str).
    return api.generic("POST", "/api/v1/data/query", body, content_type=content_type, **environ)  # type: ignore[arg-type]


def test_a_json_body_past_the_default_limit_is_413(viewer_api: APIClient, settings: Any) -> None:
    # The real default (16 MiB) and a real body one byte past it.
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    assert limit == 16 * 1024 * 1024
    stream = CountingStream(query_body(limit + 1))
    environ: dict[str, Any] = {"wsgi.input": stream}
    response = post(viewer_api, b"", CONTENT_LENGTH=str(limit + 1), **environ)
    assert response.status_code == 413
    body = response.json()
    assert body["code"] == "too_large"
    assert str(limit) in body["message"] and "DATA_UPLOAD_MAX_MEMORY_SIZE" in body["message"]
    assert stream.taken == 0  # refused on its Content-Length, before reading


def test_a_json_body_at_the_limit_is_read(viewer_api: APIClient, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    assert post(viewer_api, query_body(1000)).status_code == 200
    response = post(viewer_api, query_body(1001))
    assert response.status_code == 413 and "1000" in response.json()["message"]


def test_a_form_body_past_the_limit_is_413(viewer_api: APIClient, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    form = b"sensors=p1&start=2026-11-02T10:00:00Z&end=2026-11-02T11:00:00Z&pad=" + b"x" * 1000
    response = post(viewer_api, form, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 413 and response.json()["code"] == "too_large"


@pytest.mark.parametrize("parser", [JSONParser(), FormParser()])
def test_a_body_without_content_length_is_read_up_to_the_limit_only(parser: Any, settings: Any) -> None:
    # A chunked body has no Content-Length: the parser stops one byte past the limit.
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    request = APIRequestFactory().post("/api/v1/data/query", b"", content_type=parser.media_type)
    request.META.pop("CONTENT_LENGTH", None)
    stream = CountingStream(b"[" + b"1," * 5000 + b"1]")
    with pytest.raises(RequestTooLarge):
        parser.parse(stream, parser.media_type, {"request": request})
    assert stream.taken == 1001
