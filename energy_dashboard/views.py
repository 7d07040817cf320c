"""The platform's own endpoints: the service description, /health, the overview, tokens."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.views.decorators.http import require_GET
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
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
from energy_dashboard.web import websocket_url
from ingestion import services as ingestion_services
from sensors import services as sensors_services


@require_GET
def service_root(request: HttpRequest) -> HttpResponse:
    """A browser's overview page; for API clients, what this service is and where its parts
    are (no authentication)."""
    if pages.wants_html(request):
        return pages.overview(request)
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


class OverviewSerializer(serializers.Serializer):  # type: ignore[type-arg]
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


class TokenView(ObtainAuthToken):
    """POST username and password; answers `{"token": ...}` for the Authorization header."""

    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "login"
    permission_classes: list[Any] = []
