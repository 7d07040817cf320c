"""Every API error is a JSON body with a message; a browser on a page gets the same error as a
page in the product's layout (`wants_page`)."""

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


# The URL prefixes that always answer JSON, whatever the client accepts.
JSON_PREFIXES = ("/api/", "/health")
HEADINGS = {
    400: "Bad request",
    403: "Not allowed",
    404: "Page not found",
    413: "Too large",
    500: "Something went wrong",
}


def wants_page(request: HttpRequest) -> bool:
    """True for a browser on a page: not an API path, and HTML preferred to JSON (a browser's
    Accept lists text/html first; an API client's says application/json or */*)."""
    if request.path.startswith(JSON_PREFIXES):
        return False
    for media in request.accepted_types:
        if media.match("application/json"):
            return False
        if media.match("text/html") and media.main_type != "*":
            return True
    return False


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


def _error(request: HttpRequest, status: int, message: str, code: str) -> HttpResponse:
    """The error as JSON, or for a browser on a page as the layout's error page."""
    if not wants_page(request):
        return _json_error(status, message, code)
    # Imported here: the layout's helper renders templates, which the API's errors never need.
    from energy_dashboard.core.web import render_page

    try:
        return render_page(
            request,
            "pages/error.html",
            title=HEADINGS.get(status, "Error"),
            section="",
            context={"heading": HEADINGS.get(status, "Error"), "detail": message, "status_code": status},
            status=status,
        )
    except Exception:
        # The layout needs the session and the database (the user's role, the navigation);
        # when that is what failed, the error still gets its answer.
        logger.exception("the error page could not be rendered; answering JSON")
        return _json_error(status, message, code)


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """404: a body that says what was missing (JSON, or a page for a browser on a page)."""
    return _error(request, 404, f"Nothing at {request.path}.", "not_found")


def server_error(request: HttpRequest) -> HttpResponse:
    """500; the traceback goes to the log, never to the client."""
    return _error(request, 500, "Internal error; it has been logged.", "server_error")


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """400 raised outside DRF (a disallowed Host header), or a body Django itself refused:
    those say which limit they crossed."""
    if isinstance(exception, RequestDataTooBig):
        return _error(
            request,
            413,
            "The request body is larger than DATA_UPLOAD_MAX_MEMORY_SIZE "
            f"({settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes); send less per request.",
            "too_large",
        )
    if isinstance(exception, TooManyFieldsSent):
        return _error(
            request,
            400,
            f"The request has more than DATA_UPLOAD_MAX_NUMBER_FIELDS "
            f"({settings.DATA_UPLOAD_MAX_NUMBER_FIELDS}) fields.",
            "too_many_fields",
        )
    return _error(request, 400, "Bad request.", "bad_request")


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """403 raised outside DRF."""
    return _error(request, 403, "Permission denied.", "permission_denied")


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """403 for a form or request that failed the CSRF check (CSRF_FAILURE_VIEW); the reason
    (a missing token, a wrong origin) is logged, the client is told what to do."""
    logger.warning("CSRF check failed for %s: %s", request.path, reason)
    return _error(
        request,
        403,
        "The form's security token was missing or out of date (CSRF); reload the page and try again.",
        "csrf_failed",
    )
