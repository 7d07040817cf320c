"""Every API error is a JSON body with a message."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import HttpRequest, HttpResponse, HttpResponsePermanentRedirect, JsonResponse
from django.urls import Resolver404, resolve
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler

logger = logging.getLogger(__name__)


def _first_message(detail: Any) -> str:
    if isinstance(detail, dict):
        for field, value in detail.items():
            inner = _first_message(value)
            return inner if field in ("detail", "non_field_errors") else f"{field}: {inner}"
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    return str(detail)


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, reshaped to `{"message", "code", "errors"?}`.

    `message` is one sentence for people; `code` is stable for programs; `errors` keeps the
    per-field details of a validation error.
    """
    if isinstance(exc, (RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent)):
        # Django's refusals of a body DRF's parsers read: under DEBUG they became its HTML
        # error page, and without it a 400 that did not say which limit.
        exc = _body_refused(exc)
    response = exception_handler(exc, context)
    if response is None:
        return None
    data = response.data
    if isinstance(exc, exceptions.APIException):
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else getattr(exc, "default_code", "invalid")
    else:
        code = "error"
    body: dict[str, Any] = {"message": _first_message(data), "code": code}
    if isinstance(exc, exceptions.ValidationError):
        body["errors"] = data
    response.data = body
    return response


class _BodyRefused(exceptions.APIException):
    def __init__(self, status_code: int, message: str, code: str) -> None:
        self.status_code = status_code
        super().__init__(message, code)


def _body_refused(exc: Exception) -> exceptions.APIException:
    if isinstance(exc, RequestDataTooBig):
        return _BodyRefused(
            413,
            "The request body is larger than DATA_UPLOAD_MAX_MEMORY_SIZE "
            f"({settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes); send less per request.",
            "too_large",
        )
    if isinstance(exc, TooManyFilesSent):
        return _BodyRefused(
            400,
            f"The request has more than DATA_UPLOAD_MAX_NUMBER_FILES "
            f"({settings.DATA_UPLOAD_MAX_NUMBER_FILES}) files.",
            "too_many_files",
        )
    return _BodyRefused(
        400,
        f"The request has more than DATA_UPLOAD_MAX_NUMBER_FIELDS "
        f"({settings.DATA_UPLOAD_MAX_NUMBER_FIELDS}) fields.",
        "too_many_fields",
    )


def _json_error(status: int, message: str, code: str) -> JsonResponse:
    return JsonResponse({"message": message, "code": code}, status=status)


def not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    """404 as JSON: API clients and browsers alike get a body that says what was missing."""
    return _json_error(404, f"Nothing at {request.path}.", "not_found")


@csrf_exempt  # it changes nothing; a write to an unknown path is a 404, not a CSRF page
def api_not_found(request: HttpRequest) -> HttpResponse:
    """The last route under /api/v1/: its JSON 404 even under DEBUG. A path that only lacks
    its trailing slash is redirected, as CommonMiddleware's APPEND_SLASH did before this route
    matched everything."""
    if settings.APPEND_SLASH and not request.path_info.endswith("/"):
        try:
            match = resolve(request.path_info + "/")
        except Resolver404:
            match = None
        if match is not None and match.url_name != "api-not-found":
            return HttpResponsePermanentRedirect(request.get_full_path(force_append_slash=True))
    return not_found(request)


def server_error(request: HttpRequest) -> JsonResponse:
    """500 as JSON; the traceback goes to the log, never to the client."""
    return _json_error(500, "Internal error; it has been logged.", "server_error")


def bad_request(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    """400 raised outside DRF (a disallowed Host header), or a body Django itself refused:
    those say which limit they crossed."""
    if isinstance(exception, RequestDataTooBig):
        return _json_error(
            413,
            "The request body is larger than DATA_UPLOAD_MAX_MEMORY_SIZE "
            f"({settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes); send less per request.",
            "too_large",
        )
    if isinstance(exception, TooManyFieldsSent):
        return _json_error(
            400,
            f"The request has more than DATA_UPLOAD_MAX_NUMBER_FIELDS "
            f"({settings.DATA_UPLOAD_MAX_NUMBER_FIELDS}) fields.",
            "too_many_fields",
        )
    return _json_error(400, "Bad request.", "bad_request")


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    """403 raised outside DRF (e.g. a failed CSRF check)."""
    return _json_error(403, "Permission denied.", "permission_denied")
