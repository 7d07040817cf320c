"""The Content-Security-Policy of every HTML answer: scripts and styles from our own origin only.

No page has an inline script or style (configuration reaches scripts through `json_script`,
which the browser does not run), so a script injected into a page cannot run either. The live
feed may be on another port (daphne beside gunicorn), so its origin is allowed for
connections. The API's documentation pages (Swagger UI, ReDoc, served from our own static
files) set styles from script and get `'unsafe-inline'` for styles only.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from django.http import HttpRequest, HttpResponse

from energy_dashboard.core.web import websocket_url

HEADER = "Content-Security-Policy"
# Paths whose third-party pages style themselves inline.
INLINE_STYLE_PATHS = ("/api/v1/docs/", "/api/v1/redoc/")


def policy(request: HttpRequest) -> str:
    """The policy for `request`'s answer."""
    live = urlsplit(websocket_url(request))
    connect = ["'self'", f"{live.scheme}://{live.netloc}"]
    style = "'self' 'unsafe-inline'" if request.path.startswith(INLINE_STYLE_PATHS) else "'self'"
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            f"style-src {style}",
            "img-src 'self' data:",
            "font-src 'self'",
            f"connect-src {' '.join(connect)}",
            "object-src 'none'",
            "base-uri 'self'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


class ContentSecurityPolicyMiddleware:
    """Adds the policy to HTML answers that have none of their own."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if HEADER not in response and response.get("Content-Type", "").startswith("text/html"):
            response[HEADER] = policy(request)
        return response
