"""What every page shares: the layout's context, the sign-in rule, the live feed's address.

Modules render their pages through `render_page`, so that the navigation, the theme, kiosk
mode and the page's configuration (handed to its script with `json_script`) are the same on
every page. A page needs a user with a role; viewers get the same pages without the controls
that change anything (`can_operate` in the context), and the API refuses their writes anyway.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import NoReverseMatch, reverse

from energy_dashboard.core import roles

THEMES = ("auto", "light", "dark")

# The main navigation: (label, URL name, section). A URL that is not installed is left out.
NAV = (
    ("Overview", "service-root", "overview"),
    ("Sensors", "page-sensors", "sensors"),
    ("Demand response", "page-demand-response", "demand_response"),
    ("Ingestion", "page-ingestion", "ingestion"),
)


def websocket_url(request: HttpRequest) -> str:
    """Where the live WebSocket is, as seen by this client."""
    scheme = "wss" if request.is_secure() else "ws"
    if settings.PUBLIC_WS_URL == "same-origin":
        # Behind a proxy that routes /api/v1/ws to daphne on the page's own origin.
        return f"{scheme}://{request.get_host()}/api/v1/ws"
    if settings.PUBLIC_WS_URL:
        return str(settings.PUBLIC_WS_URL)
    host = request.get_host()
    # Strip the HTTP port (keeping an IPv6 literal's brackets): daphne listens on WS_PORT.
    if not host.endswith("]") and ":" in host:
        host = host.rsplit(":", 1)[0]
    return f"{scheme}://{host}:{settings.WS_PORT}/api/v1/ws"


def page_view(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """A page for users with a role: anonymous users go to sign-in, users with no role get 403."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not roles.can_view(request.user):
            return render(
                request,
                "pages/error.html",
                _context(
                    request,
                    title="No access",
                    section="",
                    page={},
                    extra={
                        "heading": "No access",
                        "detail": "Your account has no role yet. Ask an operator to add you to "
                        "the viewers or the operators.",
                    },
                ),
                status=403,
            )
        return view(request, *args, **kwargs)

    return wrapped


def _nav(request: HttpRequest, section: str) -> list[dict[str, Any]]:
    items = []
    for label, name, key in NAV:
        try:
            url = reverse(name)
        except NoReverseMatch:
            continue
        items.append({"label": label, "url": url, "current": key == section})
    if request.user.is_staff:
        items.append({"label": "Admin", "url": reverse("admin:index"), "current": False})
    items.append({"label": "API", "url": reverse("api-docs"), "current": False})
    return items


def theme_of(request: HttpRequest) -> str:
    """The theme the user chose (a cookie the theme button sets), else "auto"."""
    theme = request.COOKIES.get("theme", "auto")
    return theme if theme in THEMES else "auto"


def _context(
    request: HttpRequest, *, title: str, section: str, page: dict[str, Any], extra: dict[str, Any]
) -> dict[str, Any]:
    return {
        "title": title,
        "theme": theme_of(request),
        "nav": _nav(request, section) if request.user.is_authenticated else [],
        "can_operate": roles.can_operate(request.user),
        "page": page,
        **extra,
    }


def render_page(
    request: HttpRequest,
    template: str,
    *,
    title: str,
    section: str,
    script: str | None = None,
    live: bool = False,
    kiosk_allowed: bool = False,
    page: dict[str, Any] | None = None,
    context: dict[str, Any] | None = None,
    status: int = 200,
) -> HttpResponse:
    """Render a page in the layout.

    `script` is the page's ES module under static/dist/ (`overview` for dist/overview.js);
    `page` is the configuration its script reads; with `live` the page follows the live feed
    (its URL is added to `page`) and the layout shows the live badge; with `kiosk_allowed`,
    `?kiosk=1` drops every piece of chrome for wall screens.
    """
    kiosk = kiosk_allowed and request.GET.get("kiosk") in ("1", "true", "yes")
    config = {
        "timeZone": settings.TIME_ZONE,
        "canOperate": roles.can_operate(request.user),
        "kiosk": kiosk,
        **(page or {}),
    }
    if live:
        config["websocket"] = websocket_url(request)
    extra = {
        "page_script": f"dist/{script}.js" if script else None,
        "live": live,
        "kiosk": kiosk,
        **(context or {}),
    }
    return render(
        request,
        template,
        _context(request, title=title, section=section, page=config, extra=extra),
        status=status,
    )
