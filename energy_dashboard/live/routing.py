"""The live feed's WebSocket URL routes."""

from typing import Any

from django.urls import path

from energy_dashboard.live.consumers import LiveConsumer

# Channels routes ASGI applications with Django's path(), which django-stubs types for views
# only; channels' stubs call such a route an _ExtendedURLPattern, a name of their own.
websocket_urlpatterns: list[Any] = [path("api/v1/ws", LiveConsumer.as_asgi())]  # type: ignore[arg-type]
