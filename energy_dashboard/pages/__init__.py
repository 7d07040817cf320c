"""The server-rendered pages: one file per page (or group of pages), their routes in `urls.py`.

Pages are wiring: like the API overview they compose the modules' public services, and the
modules never import them.
"""

from __future__ import annotations

from django.http import HttpRequest


def wants_html(request: HttpRequest) -> bool:
    """True when the client prefers an HTML page to JSON (a browser, not an API client)."""
    accepted = request.accepted_types
    for media in accepted:
        if media.match("application/json"):
            return False
        if media.match("text/html") and media.main_type != "*":
            return True
    return False
