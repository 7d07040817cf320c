"""The platform's own endpoints: the service description, /health, the overview, tokens, lockouts."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from axes.helpers import get_client_username
from axes.models import AccessAttempt
from django.conf import settings
from django.db.models import Max, Q
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse as api_reverse
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

import energy_dashboard
from demand_response import services as dr_services
from energy_dashboard import health as health_checks
from energy_dashboard import pages
from energy_dashboard.core.client_ip import throttle_ident
from energy_dashboard.core.web import websocket_url
from energy_dashboard.pages import overview as overview_page
from ingestion import services as ingestion_services
from sensors import services as sensors_services


@require_GET
def service_root(request: HttpRequest) -> HttpResponse:
    """A browser's overview page; for API clients, what this service is and where its parts
    are (no authentication)."""
    if pages.wants_html(request):
        return overview_page.overview(request)
    return JsonResponse(
        {
            "name": "Energy Dashboard",
            "version": energy_dashboard.__version__,
            "api": request.build_absolute_uri(reverse("api-root")),
            "docs": request.build_absolute_uri(reverse("api-docs")),
            "schema": request.build_absolute_uri(reverse("api-schema")),
            "health": request.build_absolute_uri(reverse("health")),
            "websocket": websocket_url(request),
            "admin": request.build_absolute_uri(reverse("admin:index")),
        }
    )


@require_GET
def health(request: HttpRequest) -> JsonResponse:
    """State of every database alias, Redis, the workers and beat: 200 healthy, 503 not."""
    healthy, body = health_checks.health()
    return JsonResponse(body, status=200 if healthy else 503)


class ApiRootView(APIView):
    """The map of the API."""

    @extend_schema(exclude=True)
    def get(self, request: Request, format: str | None = None) -> Response:
        def link(name: str) -> str:
            return api_reverse(name, request=request, format=format)

        return Response(
            {
                "overview": link("overview"),
                "sensors": link("sensor-list"),
                "rooms": link("room-list"),
                "auth_token": link("auth-token"),
                "schema": link("api-schema"),
                "docs": link("api-docs"),
                "health": request.build_absolute_uri(reverse("health")),
                "websocket": websocket_url(request),
            }
        )


class OverviewSerializer(serializers.Serializer[Any]):
    """Counts per module and the state of the background processes."""

    version = serializers.CharField()
    modules = serializers.DictField()
    processes = serializers.DictField()


class OverviewView(APIView):
    """Counts per module and what is running."""

    @extend_schema(responses=OverviewSerializer)
    def get(self, request: Request) -> Response:
        modules: dict[str, Any] = {
            "sensors": sensors_services.overview(),
            "demand_response": dr_services.overview(),
            "ingestion": ingestion_services.overview(),
        }
        return Response(
            {
                "version": energy_dashboard.__version__,
                "modules": modules,
                "processes": health_checks.process_checks(),
            }
        )


class ClientScopedRateThrottle(ScopedRateThrottle):
    """DRF's scoped throttle, counting per client as `client_ip.throttle_ident` sees it.

    DRF's own `get_ident` takes `X-Forwarded-For` from anyone when NUM_PROXIES is unset, so a
    client that sent a new header with each request was never throttled.
    """

    def get_ident(self, request: Request) -> str:
        return throttle_ident(request)


def lockout_retry_after(request: HttpRequest | Request, credentials: dict[str, Any] | None) -> int:
    """Seconds until a login lockout has surely ended (its records' last failure + the cool-off)."""
    username = get_client_username(request, credentials)
    address = getattr(request, "axes_ip_address", None)
    latest: datetime | None = AccessAttempt.objects.filter(
        Q(username=username) | Q(ip_address=address)
    ).aggregate(at=Max("attempt_time"))["at"]
    cool_off: timedelta = settings.AXES_COOLOFF_TIME
    if latest is None:
        return math.ceil(cool_off.total_seconds())
    return max(1, math.ceil((latest + cool_off - timezone.now()).total_seconds()))


def lockout_message(seconds: int) -> str:
    """What a locked-out user is told."""
    minutes = max(1, math.ceil(seconds / 60))
    return (
        "Too many failed logins for this account or from this address. Try again in "
        f"{minutes} minute{'s' if minutes != 1 else ''}, or ask an operator to lift the lockout."
    )


def lockout_response(
    request: HttpRequest,
    original_response: HttpResponse | None = None,
    credentials: dict[str, Any] | None = None,
) -> HttpResponse:
    """django-axes' AXES_LOCKOUT_CALLABLE: 429, JSON under /api/, a page for people elsewhere."""
    wait = lockout_retry_after(request, credentials)
    message = lockout_message(wait)
    response: HttpResponse
    if request.path.startswith("/api/"):
        response = JsonResponse({"message": message, "code": LockedOut.default_code}, status=429)
    else:
        # The admin's sign-in and any LoginView: a readable page in the admin's look.
        context = {"title": "Sign-in locked", "message": message}
        response = render(request, "admin/locked_out.html", context, status=429)
    response["Retry-After"] = str(wait)
    return response


class LockedOut(exceptions.APIException):
    """429: too many failed logins for the username or from the address (django-axes)."""

    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_code = "locked_out"

    def __init__(self, wait: int) -> None:
        super().__init__(lockout_message(wait))
        # DRF's exception handler turns this into the Retry-After header.
        self.wait = wait


class TokenView(ObtainAuthToken):
    """POST username and password; answers `{"token": ...}` for the Authorization header.

    Throttled per client address (LOGIN_THROTTLE_RATE) and covered by the login lockout: a
    locked-out username or address gets 429 `locked_out`, the right password too.
    """

    throttle_classes = [ClientScopedRateThrottle]
    throttle_scope = "login"
    permission_classes: list[Any] = []

    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        try:
            return super().post(request, *args, **kwargs)
        except exceptions.ValidationError:
            # authenticate() got DRF's Request, so django-axes marked that object, not the
            # HttpRequest its middleware looks at: the lockout is answered here.
            if getattr(request, "axes_locked_out", False):
                raise LockedOut(
                    lockout_retry_after(request, getattr(request, "axes_credentials", None))
                ) from None
            raise
